"""graphql.extractor: a GraphQL query, paged, staged into the session as a table."""
