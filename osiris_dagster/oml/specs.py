"""Our own spec registry for the nine Osiris components: config schema, modes, secrets, and
which fields a connection supplies. Every pipeline validates against this, including pipelines
whose components have no driver yet."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from osiris_dagster.oml.model import Pipeline, Step

# Osiris OML mode -> the component mode it maps to.
OML_MODES = {"read": "extract", "write": "write", "transform": "transform"}


@dataclass(frozen=True)
class Prop:
    """One config property: JSON-schema-like type, default, enum, bounds."""

    type: str | tuple[str, ...]  # "string" | "integer" | "number" | "boolean" | "array" | "object"
    default: Any = None
    enum: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    min_length: int | None = None
    description: str = ""
    # Query text in this language ("duckdb", "mysql", "graphql"): `${params.x}` in it becomes
    # a quoted value, never code (oml/sql_params.py). "env": text (or, for an object, its
    # values) whose `${VAR}`s the driver resolves from the environment after the parameters:
    # a parameter's value holding `${` is refused there (it would be read as a variable).
    language: str | None = None


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    modes: tuple[str, ...]  # component modes: extract / transform / write
    properties: dict[str, Prop]
    required: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    # field -> policy (allowed | forbidden | warning) for fields a connection supplies
    connection_fields: dict[str, str] = field(default_factory=dict)
    kinds: tuple[str, ...] = ()
    description: str = ""
    # "module:function([(query, visible_tables), ...]) -> [problem | None, ...]", run by
    # `validate` on the queries of this component (imported only when such a step exists)
    query_check: str | None = None
    # keeps a high-water mark between runs: its rows must reach every step after it
    # (runtime/deliveries.py)
    incremental: bool = False

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def produces_table(self) -> bool:
        return "write" not in self.modes

    def defaults(self) -> dict[str, Any]:
        """Spec defaults, except for fields a connection supplies (they must never override it)."""
        return {
            k: p.default
            for k, p in self.properties.items()
            if p.default is not None and k not in self.connection_fields
        }


def _s(**kw: Any) -> Prop:
    return Prop("string", **kw)


def _i(**kw: Any) -> Prop:
    return Prop("integer", **kw)


def _b(**kw: Any) -> Prop:
    return Prop("boolean", **kw)


_ENCODINGS_IN = ("utf-8", "utf-16", "ascii", "latin-1", "iso-8859-1")

# Shared by mysql.extractor and mysql.writer: what a @mysql connection supplies.
_MYSQL_CONNECTION = {
    "host": _s(default="localhost"),
    "port": _i(default=3306, minimum=1, maximum=65535),
    "database": _s(),
    "user": _s(),
    "password": _s(),
    "table": _s(),
    "schema": _s(),
}
_MYSQL_POOL = {"pool_size": _i(default=5), "pool_recycle": _i(default=3600),
               "echo": _b(default=False)}
_MYSQL_CONNECTION_FIELDS = {"host": "allowed", "port": "allowed", "schema": "allowed",
                            "database": "forbidden", "user": "forbidden", "password": "forbidden"}

# Shared by supabase.extractor and supabase.writer: the project, its key and the table.
_SUPABASE_TABLE = {
    "url": _s(),
    "key": _s(min_length=20),
    "project_id": _s(),
    "table": _s(),
    "schema": _s(default="public"),
}
_SUPABASE_CONNECTION_FIELDS = {"url": "allowed", "project_id": "allowed", "key": "forbidden"}
_SUPABASE = {"required": ("key", "table"), "secrets": ("key",),
             "connection_fields": _SUPABASE_CONNECTION_FIELDS, "kinds": ("supabase", "postgres")}

SPECS: dict[str, ComponentSpec] = {
    s.name: s
    for s in [
        ComponentSpec(
            name="duckdb.processor",
            modes=("transform",),
            properties={"query": _s(min_length=1, description="DuckDB SQL over df_<step>",
                                     language="duckdb")},
            required=("query",),
            kinds=("duckdb", "sql"),
            query_check="osiris_dagster.drivers.duckdb.seal:problems",
            description="Transforms upstream tables with DuckDB SQL.",
        ),
        ComponentSpec(
            name="filesystem.csv_extractor",
            modes=("extract",),
            properties={
                "path": _s(min_length=1),
                "delimiter": _s(default=",", max_length=1),
                "encoding": _s(default="utf-8", enum=_ENCODINGS_IN),
                "header": Prop(("boolean", "integer"), default=True),
                "columns": Prop("array"),
                "skip_rows": _i(default=0, minimum=0, maximum=2**63 - 1),
                "limit": _i(minimum=1, maximum=2**63 - 1),
                "parse_dates": Prop(("boolean", "array"), default=False),
                "dtype": Prop("object"),
                "na_values": Prop("array"),
                "keep_default_na": _b(default=True),
                "chunk_size": _i(default=10000, minimum=100, maximum=1_000_000),
                "skip_blank_lines": _b(default=True),
                "comment": _s(max_length=1),
                "compression": _s(default="infer", enum=("infer", "gzip", "bz2", "zip", "xz")),
            },
            required=("path",),
            connection_fields={"base_dir": "allowed"},
            kinds=("duckdb", "csv"),
            description="Reads a CSV file with DuckDB's CSV reader.",
        ),
        ComponentSpec(
            name="filesystem.csv_writer",
            modes=("write",),
            properties={
                "path": _s(min_length=1),
                "delimiter": _s(default=",", max_length=1),
                "header": _b(default=True),
                "encoding": _s(default="utf-8", enum=("utf-8", "utf-16", "ascii", "latin-1")),
                "newline": _s(default="lf", enum=("lf", "crlf")),
                "quoting": _s(default="minimal", enum=("minimal", "all", "nonnumeric")),
                "chunk_size": _i(default=1000, minimum=1, maximum=100_000),
                "create_dirs": _b(default=True),
            },
            required=("path",),
            connection_fields={"base_dir": "allowed"},
            kinds=("duckdb", "csv"),
            description="Writes its upstream table to a CSV file (atomically).",
        ),
        ComponentSpec(
            name="graphql.extractor",
            modes=("extract",),
            properties={
                "endpoint": _s(),
                "query": _s(language="graphql"),
                "variables": Prop("object", default={}),
                "headers": Prop("object", language="env"),
                "auth_type": _s(default="none", enum=("none", "bearer", "basic", "api_key")),
                "auth_token": _s(language="env"),
                "auth_username": _s(language="env"),
                "auth_header_name": _s(default="X-API-Key"),
                "timeout": _i(default=30, minimum=5, maximum=300),
                "max_retries": _i(default=3, minimum=0, maximum=10),
                "retry_delay": Prop("number", default=1.0, minimum=0.1, maximum=60),
                "pagination_enabled": _b(default=False),
                "pagination_path": _s(default="data.pageInfo"),
                "pagination_cursor_field": _s(default="endCursor"),
                "pagination_has_next_field": _s(default="hasNextPage"),
                "pagination_variable_name": _s(default="after"),
                "max_pages": _i(default=0, minimum=0),
                "data_path": _s(default="data"),
                "flatten_result": _b(default=True),
                "validate_ssl": _b(default=True),
            },
            required=("endpoint", "query"),
            secrets=("auth_token", "auth_username", "headers"),
            connection_fields={"endpoint": "allowed", "auth_token": "forbidden",
                               "auth_username": "forbidden", "headers": "warning"},
            kinds=("graphql", "api"),
            description="Extracts data from a GraphQL API.",
        ),
        ComponentSpec(
            name="mysql.extractor",
            modes=("extract",),
            properties={
                **_MYSQL_CONNECTION,
                "query": _s(language="mysql"),
                "columns": Prop("array"),
                "limit": _i(minimum=1),
                "offset": _i(default=0, minimum=0),
                "batch_size": _i(default=10000, minimum=100, maximum=100_000),
                **_MYSQL_POOL,
                "zero_dates": _s(default="error", enum=("error", "null")),
            },
            required=("database", "user", "password"),
            secrets=("password",),
            connection_fields=_MYSQL_CONNECTION_FIELDS,
            kinds=("mysql",),
            description="Extracts a MySQL query or table.",
        ),
        ComponentSpec(
            name="mysql.writer",
            modes=("write",),
            properties={
                **_MYSQL_CONNECTION,
                "mode": _s(default="append", enum=("append", "replace", "upsert")),
                "upsert_keys": Prop("array"),
                "batch_size": _i(default=1000, minimum=1, maximum=100_000),
                "create_table": _b(default=False),
                "truncate_before": _b(default=False),
                **_MYSQL_POOL,
            },
            required=("database", "user", "password", "table"),
            secrets=("password",),
            connection_fields=_MYSQL_CONNECTION_FIELDS,
            kinds=("mysql",),
            description="Writes its upstream table to MySQL.",
        ),
        ComponentSpec(
            name="posthog.extractor",
            modes=("extract",),
            incremental=True,
            properties={
                "api_key": _s(),
                "project_id": _s(),
                "region": _s(default="us", enum=("us", "eu", "self_hosted")),
                "custom_base_url": _s(),
                "data_type": _s(enum=("events", "persons", "sessions", "person_distinct_ids")),
                "event_types": Prop("array"),
                "lookback_window_minutes": _i(default=15, minimum=5, maximum=60),
                "initial_since": _s(),
                "page_size": _i(default=1000, minimum=100, maximum=10000),
                "deduplication_enabled": _b(default=True),
            },
            required=("api_key", "project_id", "data_type"),
            secrets=("api_key",),
            connection_fields={"api_key": "forbidden", "project_id": "forbidden",
                               "region": "allowed", "custom_base_url": "allowed"},
            kinds=("posthog", "api"),
            description="Extracts events, persons or sessions from PostHog.",
        ),
        ComponentSpec(
            name="supabase.extractor",
            modes=("extract",),
            properties={
                **_SUPABASE_TABLE,
                "select": _s(default="*"),
                "filter": Prop("object"),
                "order": _s(),
                "limit": _i(default=1000, minimum=1, maximum=1000),
                "offset": _i(default=0, minimum=0),
                "timeout": _i(default=30),
                "retries": _i(default=3),
                "tables": Prop("array"),
            },
            **_SUPABASE,
            description="Extracts a Supabase (PostgreSQL) table.",
        ),
        ComponentSpec(
            name="supabase.writer",
            modes=("write",),
            properties={
                **_SUPABASE_TABLE,
                "write_mode": _s(default="append", enum=("append", "replace", "upsert")),
                "primary_key": Prop(("string", "array")),
                "returning": _s(default="minimal"),
                "create_if_missing": _b(default=True),
                "batch_size": _i(default=100, minimum=1, maximum=1000),
                "timeout": _i(default=30, minimum=5, maximum=300),
                "retries": _i(default=3, minimum=0, maximum=10),
                "ddl_channel": _s(default="auto", enum=("auto", "http_sql", "psycopg2")),
                "prefer": _s(default="return=minimal",
                             enum=("return=minimal", "return=representation",
                                   "resolution=merge-duplicates",
                                   "resolution=ignore-duplicates")),
            },
            **_SUPABASE,
            description="Writes its upstream table to Supabase (PostgreSQL).",
        ),
    ]
}

# Which names are secrets is decided in one place, masking.SECRET_NAMES / is_secret_key (the
# OML validator's inline-secret check uses it too); every spec's `secrets` must be on it
# (tests/test_secrets_scan.py checks).


def get_spec(component: str) -> ComponentSpec | None:
    return SPECS.get(component)


def data_upstreams(pipeline: Pipeline, step: Step) -> list[str]:
    """Upstreams that carry a table (writers produce none; they are ordering-only)."""
    out = []
    for need in step.needs:
        spec = get_spec(pipeline.step(need).component)
        if spec is not None and spec.produces_table:
            out.append(need)
    return out
