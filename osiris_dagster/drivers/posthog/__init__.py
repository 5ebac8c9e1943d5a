"""posthog.extractor: HogQL queries paged by keyset, staged into the session, with an
incremental high-water mark committed only after the step's table is accepted."""
