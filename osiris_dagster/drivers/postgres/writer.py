"""``supabase.writer``: the first upstream table -> a Supabase (PostgreSQL) table.

The connection decides the channel (:func:`.connection.supabase_channels`):

**SQL channel** (``pg_dsn``/``dsn``/``sql_dsn``, ``pg_host``..., or ``host/database/user``):
everything runs in **one PostgreSQL transaction**, so a failure leaves the target as it was.
Nothing is retried. The one unknown outcome, a connection that breaks during ``COMMIT``, is
reported as such (for an append as a non-retryable :class:`OutcomeUnknownError`).

* Rows leave DuckDB as Arrow batches, are rendered as CSV by Arrow (PostgreSQL's text formats;
  NULL unquoted, every value quoted) and streamed with ``COPY ... FROM STDIN`` -- no Python
  object per value, nothing held in memory beyond one batch.
* ``append``: ``COPY`` straight into the target.
* ``upsert``: ``COPY`` into a temporary staging table (the target's own column types, dropped on
  commit), then ``INSERT ... SELECT ... ON CONFLICT (primary_key) DO UPDATE`` of the input's
  columns: a target column the input lacks keeps its value on an existing row (that is what an
  upsert is for).
* ``replace``: the target ends with exactly the incoming rows: staging as for upsert, then
  ``DELETE`` the rows whose key is not in the input, then the upsert (rows that stay keep their
  identity, so foreign keys pointing at them are not broken). A row that stays ends as a freshly
  inserted row would: each target column the input lacks is set to its ``DEFAULT`` (NULL without
  one; ``DEFAULT now()`` gives the write's time) in the ``DO UPDATE``, never left holding its old
  value, which nothing in the input vouches for any more. Except the columns that identify a
  row, which keep their value: an identity column, a column whose default (or its domain's)
  draws from a sequence (``serial``, ``nextval(...)``), a column a foreign key references and a
  column of the table's PRIMARY KEY or of a unique index (``id uuid DEFAULT gen_random_uuid()``
  when ``primary_key`` names another unique column) -- a new value would
  renumber an existing row and break what refers to it (an ``ON UPDATE CASCADE`` would even
  rewrite the referencing rows without a word). A generated column is not assigned: PostgreSQL
  recomputes it. The event ``replace.columns_reset`` names the columns reset and those kept
  (and why). A NOT NULL column without a default that the input lacks fails the step, as a fresh
  insert would. Without ``primary_key``: delete all rows, then ``COPY`` (every row is new).
* ``create_if_missing`` (default true): a missing table is created from the DuckDB schema, with
  ``PRIMARY KEY (primary_key)`` when given, inside the same transaction (PostgreSQL DDL is
  transactional). The DDL is written to ``artifacts/<step>/ddl_plan.sql``. ``schema`` (default
  ``public``) is honoured and must exist.

  ======================  ===========================================================
  DuckDB                  PostgreSQL column created
  ======================  ===========================================================
  BOOLEAN                 boolean
  TINYINT/SMALLINT        smallint
  INTEGER / BIGINT        integer / bigint
  UTINYINT/USMALLINT/     smallint / integer / bigint / numeric(20,0)
  UINTEGER/UBIGINT
  HUGEINT                 numeric(39,0)
  DECIMAL(p,s)            numeric(p,s)
  FLOAT / DOUBLE          real / double precision (NaN and infinities kept)
  DATE / TIME / TIMETZ    date / time / timetz
  TIMESTAMP / _S/_MS/_NS  timestamp (timestamp(0) / timestamp(3) / timestamp)
  TIMESTAMPTZ             timestamptz
  INTERVAL / UUID         interval / uuid
  VARCHAR / BLOB          text / bytea
  JSON / STRUCT / MAP     jsonb
  T[] (T scalar)          T'[] (a PostgreSQL array); nested lists -> jsonb
  ======================  ===========================================================

**REST channel** (only ``url``/``project_id`` + key): PostgREST ``POST /rest/v1/<table>`` in batches
of ``batch_size`` JSON rows (dates/timestamps as ISO strings, decimals as JSON numbers, bytea as
``\\x..`` hex, NaN/Infinity as strings, NULL as null), ``apikey`` + ``Authorization: Bearer``
headers, ``Prefer: return=minimal`` (upsert/replace add ``resolution=merge-duplicates`` and
``on_conflict=<primary_key>``), ``Content-Profile`` for a non-public ``schema``, sent by the shared
client (:mod:`osiris_dagster.drivers.postgres.postgrest` on
:mod:`osiris_dagster.drivers.http.client`: urllib3's ``Retry``). Requests are retried up to
``retries`` times with exponential backoff (0.25 s doubling, at most 60 s, with jitter) honouring
``Retry-After`` (a wait over 60 s fails the step), each attempt with ``timeout``, but only when a
retry cannot write twice: after a 429 or a connection that failed before anything was sent, any
request; after a 5xx, a read timeout or a dropped connection, only idempotent ones
(:func:`osiris_dagster.drivers.postgres.postgrest.is_idempotent`: reads, filtered DELETEs,
upsert/replace POSTs with ``on_conflict``). An append batch that reached the server and then failed
may have been committed: the step fails (:class:`OutcomeUnknownError`, never retried, not by Dagster
either) naming the batch's rows, how to check and how to make the write safe (upsert). ``replace`` =
upsert, then delete the rows whose key is not in the input: ``DELETE ?<pk>=not.in.(...)`` when the
keys fit in one URL, else the existing keys are read, compared in DuckDB, and the stale ones deleted
in chunks (``in.(...)``). Once an append batch is written (and once every write is done), any
later error, even a log write on a full disk, fails the step without a retry and is recorded as
an unsettled write (:func:`osiris_dagster.drivers.base.committed`). ``merge-duplicates``
updates only the columns sent, so a row that stays keeps its old values in the target columns
the input lacks (over SQL they get their defaults).

Limits of REST (documented, not hidden): batches commit one by one, so a failure part-way leaves
the earlier batches written (use a SQL channel for atomic writes); ``replace`` needs a one-column
``primary_key`` and keeps, on the rows that stay, the values of columns the input lacks (select
them upstream, with the values wanted, or use a SQL channel); a missing table cannot be created
over REST: the step fails and leaves the DDL in ``ddl_plan.sql`` (Osiris silently wrote nothing).

``returning``, ``prefer`` and ``ddl_channel`` are accepted for compatibility and ignored (Osiris
did the same with the first two). Returns ``target`` ``postgresql://host:port/db/schema.table`` or
the REST table URL, never with credentials.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from osiris_dagster.core.errors import (
    DriverError,
    NotRetryableError,
    OutcomeUnknownError,
    StepCancelled,
)
from osiris_dagster.core.naming import quote_ident, quote_literal
from osiris_dagster.drivers.base import (
    DriverResult,
    StepColumnLineage,
    StepContext,
    UpstreamTable,
    commit_started,
    committed,
)
from osiris_dagster.drivers.dbapi import close_quietly, rollback_quietly
from osiris_dagster.drivers.duck_types import DECIMAL_TYPE, is_nested, list_element
from osiris_dagster.drivers.error_text import first_line
from osiris_dagster.drivers.identifiers import pg_ident
from osiris_dagster.drivers.lost_commit import lost_commit_note
from osiris_dagster.drivers.options import name_list, positive_int, positive_seconds, required_text
from osiris_dagster.drivers.postgres.catalog import table_columns_sql
from osiris_dagster.drivers.postgres.connection import (
    PgParams,
    RestParams,
    pg_connect,
    pg_error,
    supabase_channels,
)
from osiris_dagster.drivers.postgres.postgrest import (
    PostgrestClient,
    profile_headers,
    quote_in_value,
)
from osiris_dagster.drivers.postgres.types import pg_ddl_type
from osiris_dagster.drivers.progress import Progress
from osiris_dagster.drivers.session_reads import (
    arrow_batches,
    first_upstream,
    refuse_null_keys,
    row_lists,
    scalar,
)
from osiris_dagster.drivers.target_fit import check_values_fit, pg_target_column
from osiris_dagster.drivers.text_times import pg_changed_text

COMPONENT = "supabase.writer"
_MODES = ("append", "replace", "upsert")
_COPY_BATCH = 50_000
_URL_BUDGET = 6000  # characters of keys in one DELETE ...not.in.(...) URL
_DELETE_CHUNK = 100


@dataclass(frozen=True)
class Options:
    table: str
    schema: str
    mode: str
    primary_key: list[str]
    create_if_missing: bool
    batch_size: int
    timeout: float
    retries: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Options:
        table = required_text(config, "table", COMPONENT, "the Supabase table to write")
        mode = str(config.get("write_mode") or config.get("mode") or "append").lower()
        mode = {"insert": "append"}.get(mode, mode)
        if mode not in _MODES:
            raise DriverError(f"{COMPONENT}: `write_mode` must be one of {', '.join(_MODES)}, "
                              f"got {config.get('write_mode')!r}")
        pk = config.get("primary_key")
        if isinstance(pk, str):
            pk = [p.strip() for p in pk.split(",") if p.strip()]
        pk = name_list(pk, "primary_key") or []
        if mode == "upsert" and not pk:
            raise DriverError(f"{COMPONENT}: write_mode 'upsert' needs `primary_key` (the "
                              "column(s) of the table's primary key or unique constraint)")
        timeout = positive_seconds(config, "timeout", 30, COMPONENT)
        return cls(table=table, schema=str(config.get("schema") or "public"), mode=mode,
                   primary_key=pk, create_if_missing=bool(config.get("create_if_missing", True)),
                   batch_size=positive_int(config, "batch_size", 100) or 100,
                   timeout=timeout,
                   retries=positive_int(config, "retries", 3, minimum=0) or 0)


def repeats_safely(config: Mapping[str, Any]) -> bool:
    """An upsert or a replace gives the same end state when run again on the same input (see
    :mod:`osiris_dagster.runtime.unsettled_writes`)."""
    mode = str(config.get("write_mode") or config.get("mode") or "append").lower()
    return mode in ("upsert", "replace")


def run(ctx: StepContext, config: Mapping[str, Any],
        inputs: Sequence[UpstreamTable]) -> DriverResult:
    opts = Options.from_config(config)
    relation, columns = first_upstream(COMPONENT, ctx, inputs)
    channels = supabase_channels(COMPONENT, ctx.connection, config)
    _check_keys(opts, columns)
    channel = "sql" if channels.sql is not None else "rest"
    # (a SQL replace deletes the rows with a NULL key too, so it repeats safely with them; a
    # SQL upsert checks once it sees the table: a NULLS NOT DISTINCT key matches NULLs)
    if channel == "rest" and opts.mode in ("upsert", "replace"):
        refuse_null_keys(ctx.con, relation, opts.primary_key,
                         f"{COMPONENT} step '{ctx.step_id}'", "primary_key",
                         f"write_mode {opts.mode}")
    rows_in = int(scalar(ctx.con, f"SELECT count(*) FROM {relation}"))
    ctx.log_event("write.start", table=f"{opts.schema}.{opts.table}", mode=opts.mode,
                  rows=rows_in, batch_size=opts.batch_size, channel=channel)
    started = time.monotonic()
    if channels.sql is not None:
        target = channels.sql.target(opts.schema, opts.table)
        rows = _SqlWrite(ctx, opts, channels.sql, relation, columns).run()
    else:
        assert channels.rest is not None
        target = channels.rest.table_url(opts.table)
        rows = _RestWrite(ctx, opts, channels.rest, relation, columns, rows_in).run()
    duration_ms = int((time.monotonic() - started) * 1000)
    ctx.log_metric("rows_written", rows)
    ctx.log_metric("duration_ms", duration_ms)
    ctx.log_event("write.complete", rows_written=rows, duration_ms=duration_ms,
                  channel_used=channel, target=target)
    return DriverResult(table=None, rows_read=rows_in, rows_written=rows, target=target,
                        extra_metadata={"mode": opts.mode, "channel": channel},
                        column_lineage=StepColumnLineage.pass_through(
                            inputs[0].step_id, [name for name, _ in columns]))


def _check_keys(opts: Options, columns: list[tuple[str, str]]) -> None:
    names = [n for n, _ in columns]
    missing = [k for k in opts.primary_key if k not in names]
    if missing:
        raise DriverError(f"{COMPONENT}: `primary_key` {missing} are not columns of the input "
                          f"({', '.join(names)})")


def create_table_ddl(schema: str, table: str, columns: list[tuple[str, str]],
                     primary_key: Sequence[str]) -> str:
    defs = [f"  {pg_ident(n, 'column')} {pg_ddl_type(t)}" for n, t in columns]
    if primary_key:
        defs.append(f"  PRIMARY KEY ({', '.join(pg_ident(k) for k in primary_key)})")
    return (f"CREATE TABLE {pg_ident(schema, 'schema')}.{pg_ident(table, 'table')} (\n"
            + ",\n".join(defs) + "\n)")


# == SQL channel ==================================================================================

# Why a keyed replace keeps the value of a column the input lacks, '' when it resets it to its
# DEFAULT (see the module docstring). A default "draws from a sequence" when it depends on one
# (nextval('s'::regclass), as serial writes it) or calls nextval by name (nextval('s'::text)).
_NULL_COLUMN = re.compile(r'null value in column "([^"]+)"')
_KEEP_ON_REPLACE = r"""CASE
    WHEN a.attgenerated <> '' THEN 'generated'
    WHEN a.attidentity <> '' THEN 'identity'
    WHEN EXISTS (SELECT 1 FROM pg_attrdef ad WHERE ad.adrelid = a.attrelid
                 AND ad.adnum = a.attnum AND (pg_get_expr(ad.adbin, ad.adrelid) ~ '\mnextval\('
                 OR EXISTS (SELECT 1 FROM pg_depend dep JOIN pg_class s ON s.oid = dep.refobjid
                            WHERE dep.classid = 'pg_attrdef'::regclass AND dep.objid = ad.oid
                            AND dep.refclassid = 'pg_class'::regclass AND s.relkind = 'S')))
        OR (NOT a.atthasdef AND coalesce(t.typdefault, '') ~ '\mnextval\(')
        THEN 'sequence default'
    WHEN EXISTS (SELECT 1 FROM pg_constraint fk WHERE fk.contype = 'f'
                 AND fk.confrelid = a.attrelid AND a.attnum = ANY(fk.confkey))
        THEN 'referenced by a foreign key'
    WHEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisunique
                 AND a.attnum = ANY(i.indkey))
        THEN 'a key of the table'
    ELSE '' END"""

# a domain's column as its base type with the domain's modifier: what holds the value (a domain
# over numeric(10,2) rounds 1.239 as that type does)
_TARGET_COLUMNS_SQL = table_columns_sql(
    "a.attname, format_type(coalesce(db.base, a.atttypid), CASE WHEN a.atttypmod >= 0 THEN "
    "a.atttypmod ELSE coalesce(db.mod, a.atttypmod) END), t.typcategory, c.relkind, "
    + _KEEP_ON_REPLACE)


class _SqlWrite:
    def __init__(self, ctx: StepContext, opts: Options, params: PgParams, relation: str,
                 columns: list[tuple[str, str]]) -> None:
        self.ctx, self.opts, self.params = ctx, opts, params
        self.relation, self.columns = relation, columns
        self.label = f"{opts.schema}.{opts.table}"
        self.qualified = f"{pg_ident(opts.schema, 'schema')}.{pg_ident(opts.table, 'table')}"
        self.target_names: dict[str, str] = {}  # input column -> target column
        self.target_category: dict[str, str] = {}  # target column -> pg typcategory
        self.target_types: dict[str, str] = {}  # existing target column -> format_type()
        # target columns the input lacks -> why a keyed replace keeps them ('' : it resets them)
        self.lacking: dict[str, str] = {}

    def _fail(self, action: str, exc: BaseException, note: str = "") -> DriverError:
        if "0x00" in str(exc):  # PostgreSQL's text has no NUL; its COPY context names no column
            note = f"{self._nul_column()} {note}".strip()
        missing = _NULL_COLUMN.search(str(exc))
        if missing and missing.group(1) in self.lacking and self.opts.mode != "append":
            note = (f"The input has no column '{missing.group(1)}', which {self.label} declares "
                    "NOT NULL without a default: PostgreSQL checks the row an upsert would "
                    "insert before it finds the row to update, so such a column must be in the "
                    f"input even for rows that exist. {note}").strip()
        error = pg_error(COMPONENT, self.ctx.step_id, self.params, action, exc, note=note)
        stage = f"COPY {_stage_name(self.ctx.step_id)},"  # COPY's context names the table
        return DriverError(str(error).replace(stage, f"COPY {self.opts.table} (its staging "
                                                     "copy),"))

    def _nul_column(self) -> str:
        """Which input column holds a NUL character (PostgreSQL refuses it in any text), and
        in which row: asked of DuckDB only once the write failed on one."""
        texts = [name for name, duck in self.columns if duck.upper() == "VARCHAR"]
        if not texts:
            return ""
        holds = [f"contains({quote_ident(n)}, chr(0))" for n in texts]
        which = " ".join(f"WHEN {h} THEN {i}" for i, h in enumerate(holds))
        found = self.ctx.con.execute(
            f"SELECT CASE {which} END, n FROM (SELECT *, row_number() OVER () AS n FROM "
            f"{self.relation}) WHERE {' OR '.join(holds)} LIMIT 1").fetchone()
        if found is None:
            return ""
        return (f"Input column '{texts[found[0]]}' holds a NUL character (row {found[1]}), which "
                "no PostgreSQL text can hold: remove it upstream, e.g. replace(col, chr(0), '') "
                "in a duckdb.processor step.")

    def run(self) -> int:
        import psycopg

        conn = pg_connect(COMPONENT, self.ctx.step_id, self.params)
        try:
            with conn.cursor() as cur:
                try:
                    rows = self._write(cur)
                except psycopg.Error as exc:
                    rollback_quietly(conn)
                    raise self._fail(f"writing {self.label}", exc,
                                     note=f"Nothing was written: the transaction was rolled "
                                          f"back and {self.label} is as it was.") from None
                except BaseException:
                    rollback_quietly(conn)
                    raise
            commit_started(self.ctx)
            try:
                conn.commit()
            except psycopg.Error as exc:
                raise self._commit_failed(conn, exc, rows) from None
            committed(self.ctx)
            return rows
        finally:
            close_quietly(conn)

    def _commit_failed(self, conn: Any, exc: BaseException, rows: int) -> DriverError:
        """A COMMIT the server refused (a deferred constraint) rolled everything back; a COMMIT
        whose connection broke may or may not have been applied, and nothing can tell which
        from here: say so, and for an append make sure nothing runs it again blindly."""
        import psycopg

        action = f"committing the write to {self.label}"
        if not (conn.broken or isinstance(exc, psycopg.OperationalError)):
            return self._fail(action, exc, note=f"Nothing was written: the transaction was "
                                                f"rolled back and {self.label} is as it was.")
        repeatable = self.opts.mode != "append"
        note = lost_commit_note(rows, self.qualified,
                                same_end_state=f"write_mode {self.opts.mode}" if repeatable
                                else None, append_option="write_mode append",
                                make_safe="write_mode: upsert with primary_key: [<key columns>]")
        if repeatable:
            return self._fail(action, exc, note=note)
        return OutcomeUnknownError(str(self._fail(action, exc, note=note)),
                                   reason=first_line(exc))

    def _write(self, cur: Any) -> int:
        opts = self.opts
        cur.execute(_TARGET_COLUMNS_SQL, (opts.schema, opts.table))
        existing = cur.fetchall()
        if not existing:
            self._create(cur)
            # the new columns are targets too (a TIMESTAMP_NS into timestamp would be rounded);
            # a misfit rolls the creation back with the rest
            cur.execute(_TARGET_COLUMNS_SQL, (opts.schema, opts.table))
            self._check_values_fit(cur, {str(r[0]): str(r[1]) for r in cur.fetchall()},
                                   created=True)
        else:
            if existing[0][3] not in ("r", "p"):
                raise DriverError(f"{COMPONENT} step '{self.ctx.step_id}': {self.label} on "
                                  f"PostgreSQL {self.params.where} is not a table (relkind "
                                  f"{existing[0][3]!r}); write to a table")
            self._map_columns([(str(r[0]), str(r[2])) for r in existing])
            self.target_types = {str(r[0]): str(r[1]) for r in existing}
            mapped = set(self.target_names.values())
            self.lacking = {str(r[0]): str(r[4]) for r in existing if str(r[0]) not in mapped}
            if opts.mode == "upsert" and not self._nulls_match(cur):
                refuse_null_keys(self.ctx.con, self.relation, opts.primary_key,
                                 f"{COMPONENT} step '{self.ctx.step_id}'", "primary_key",
                                 f"write_mode {opts.mode}")
            self._check_values_fit(cur, self.target_types)
        targets = [self.target_names[n] for n, _ in self.columns]
        col_list = ", ".join(pg_ident(c) for c in targets)
        if opts.mode == "append" or (opts.mode == "replace" and not opts.primary_key):
            if opts.mode == "replace":
                cur.execute(f"DELETE FROM {self.qualified}")
            return self._copy(cur, f"{self.qualified} ({col_list})")
        stage = pg_ident(_stage_name(self.ctx.step_id))
        cur.execute(f"CREATE TEMP TABLE {stage} ON COMMIT DROP AS SELECT {col_list} FROM "
                    f"{self.qualified} WITH NO DATA")
        rows = self._copy(cur, f"{stage} ({col_list})")
        keys = [pg_ident(self.target_names[k]) for k in opts.primary_key]
        if opts.mode == "replace":
            match = " AND ".join(f"s.{k} = t.{k}" for k in keys)
            staying = (f"SELECT count(*) FROM {self.qualified} AS t WHERE EXISTS "
                       f"(SELECT 1 FROM {stage} AS s WHERE {match})")
            cur.execute(staying)
            before = cur.fetchone()[0]
            cur.execute(f"DELETE FROM {self.qualified} AS t WHERE NOT EXISTS "
                        f"(SELECT 1 FROM {stage} AS s WHERE {match})")
            self.ctx.log_event("replace.deleted_stale", table=self.label, rows=cur.rowcount)
            cur.execute(staying)
            self._refuse_cascaded(before - cur.fetchone()[0])
        others = [pg_ident(c) for c in targets if pg_ident(c) not in keys]
        sets = [f"{c} = EXCLUDED.{c}" for c in others]
        if opts.mode == "replace":
            sets += [f"{pg_ident(c)} = DEFAULT" for c in self._columns_to_reset()]
        action = "DO UPDATE SET " + ", ".join(sets) if sets else "DO NOTHING"
        cur.execute(f"INSERT INTO {self.qualified} ({col_list}) SELECT {col_list} FROM {stage} "
                    f"ON CONFLICT ({', '.join(keys)}) {action}")
        return rows

    def _refuse_cascaded(self, lost: int) -> None:
        """Deleting the rows whose key the input lacks took ``lost`` rows whose key it has (a
        foreign key of the table onto itself, ON DELETE CASCADE: they pointed at a row that
        went): the upsert would insert them anew, but what referenced them went with them."""
        if lost:
            raise DriverError(
                f"{COMPONENT} step '{self.ctx.step_id}': deleting the rows of {self.label} "
                f"whose key the input lacks also deleted {lost} row(s) whose key it has (an "
                "ON DELETE CASCADE of the table onto itself, or through another table: they "
                "point, directly or not, at a row that goes). Nothing was written: the "
                f"transaction was rolled back and {self.label} is as it was. Change those "
                "references first (the rows that point at a row that goes), or include the "
                "rows they point at in the input.")

    def _columns_to_reset(self) -> list[str]:
        """The target columns a keyed replace sets to their DEFAULT on the rows that stay: those
        the input lacks, but for the ones that identify a row or are computed (their reason is
        logged): a row that stays must end as a fresh insert would, not with stale values."""
        reset = [name for name, keep in self.lacking.items() if not keep]
        kept = {name: keep for name, keep in self.lacking.items() if keep}
        if self.lacking:
            self.ctx.log_event("replace.columns_reset", table=self.label, columns=reset,
                               kept=kept)
        return reset

    def _nulls_match(self, cur: Any) -> bool:
        """Whether the table has a unique index on exactly the key columns that treats NULLs
        as equal (``UNIQUE NULLS NOT DISTINCT``, PostgreSQL 15+): ``ON CONFLICT`` then matches
        a NULL key, and an upsert with one repeats safely."""
        import psycopg

        keys = sorted(self.target_names[k] for k in self.opts.primary_key)
        cur.execute("SAVEPOINT osiris_nulls")
        try:
            cur.execute(
                "SELECT i.indnullsnotdistinct, array_agg(a.attname::text ORDER BY a.attname) "
                "FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "JOIN pg_attribute a ON a.attrelid = c.oid "  # key columns, not INCLUDE's
                "AND a.attnum = ANY((i.indkey::int2[])[0:i.indnkeyatts - 1]) "
                "WHERE n.nspname = %s AND c.relname = %s AND i.indisunique "
                "GROUP BY i.indexrelid, i.indnullsnotdistinct", (self.opts.schema, self.opts.table))
            rows = cur.fetchall()
        except psycopg.Error:  # before PostgreSQL 15: no such index
            cur.execute("ROLLBACK TO SAVEPOINT osiris_nulls")
            return False
        cur.execute("RELEASE SAVEPOINT osiris_nulls")
        return any(bool(nnd) and sorted(cols) == keys for nnd, cols in rows)

    def _check_values_fit(self, cur: Any, formatted: Mapping[str, str],
                          created: bool = False) -> None:
        """Fail, before anything is written, on a value PostgreSQL would store changed without
        an error (see :mod:`osiris_dagster.drivers.target_fit`; texts for temporal columns in
        forms DuckDB does not judge are judged by PostgreSQL, in this transaction:
        :mod:`osiris_dagster.drivers.text_times`); ``created``: the table is new (its creation
        rolls back with the failure)."""
        targets = {name: pg_target_column(self.target_names[name],
                                          formatted[self.target_names[name]])
                   for name, _ in self.columns}
        check_values_fit(self.ctx.con, self.relation,
                         [(name, duck, quote_ident(name)) for name, duck in self.columns],
                         targets, who=f"{COMPONENT} step '{self.ctx.step_id}'",
                         table=self.label, database="PostgreSQL",
                         alter='ALTER TABLE ... ALTER COLUMN "{column}" TYPE ...',
                         created=created,
                         server=lambda target, texts: pg_changed_text(cur, target, texts))

    def _map_columns(self, existing: list[tuple[str, str]]) -> None:
        exact = {n: n for n, _ in existing}
        folded: dict[str, list[str]] = {}
        for n, _ in existing:
            folded.setdefault(n.lower(), []).append(n)
        self.target_category = dict(existing)
        missing = []
        for name, _ in self.columns:
            if name in exact:
                self.target_names[name] = name
            elif len(folded.get(name.lower(), [])) == 1:
                self.target_names[name] = folded[name.lower()][0]
            else:
                missing.append(name)
        if missing:
            raise DriverError(
                f"{COMPONENT} step '{self.ctx.step_id}': table {self.label} on PostgreSQL "
                f"{self.params.where} has no column(s) {', '.join(repr(m) for m in missing)} "
                f"(it has: {', '.join(exact)}). Add them, or select only the target's columns "
                "upstream.")

    def _create(self, cur: Any) -> None:
        opts = self.opts
        ddl = create_table_ddl(opts.schema, opts.table, self.columns, opts.primary_key)
        path = self.ctx.artifacts_dir / "ddl_plan.sql"
        path.write_text(ddl + ";\n", encoding="utf-8")
        self.ctx.log_event("table.ddl_planned", table=self.label, ddl_path=str(path))
        if not opts.create_if_missing:
            raise DriverError(
                f"{COMPONENT} step '{self.ctx.step_id}': table {self.label} does not exist on "
                f"PostgreSQL {self.params.where}. Create it (the DDL is in {path}) or set "
                "`create_if_missing: true`.")
        cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (opts.schema,))
        if cur.fetchone() is None:
            raise DriverError(
                f"{COMPONENT} step '{self.ctx.step_id}': schema '{opts.schema}' does not exist "
                f"on PostgreSQL {self.params.where}; create it or fix `schema`.")
        cur.execute(ddl)
        self.ctx.log_event("table.ddl_executed", table=self.label)
        self.target_names = {n: n for n, _ in self.columns}
        self.target_category = {n: ("A" if pg_ddl_type(t).endswith("[]") else "")
                                for n, t in self.columns}

    def _select_sql(self) -> str:
        exprs = []
        for name, duck in self.columns:
            target = self.target_names.get(name, name)
            text = copy_text_expression(quote_ident(name), duck,
                                        self.target_category.get(target, ""),
                                        self.target_types.get(target, ""))
            exprs.append(f"{text} AS {quote_ident(name)}")
        return f"SELECT {', '.join(exprs)} FROM {self.relation}"

    def _copy(self, cur: Any, target: str) -> int:
        import pyarrow.csv as pacsv

        options = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
        progress = Progress(self.ctx)
        rows = 0
        with arrow_batches(self.ctx.con, self._select_sql(), _COPY_BATCH) as reader, \
                cur.copy(f"COPY {target} FROM STDIN (FORMAT csv)") as copy:
            for batch in reader:
                if batch.num_rows == 0:
                    continue
                buf = io.BytesIO()
                pacsv.write_csv(batch, buf, options)
                copy.write(buf.getbuffer())
                rows += batch.num_rows
                progress.add(batch.num_rows)
        progress.done()
        return rows


_PG_INTEGERS = ("smallint", "integer", "bigint")


def _stage_name(step_id: str) -> str:
    """The temporary table an upsert or a keyed replace copies its rows into first."""
    return f"_osiris_stage_{step_id}"[:60]


def copy_text_expression(ref: str, duck_type: str, target_category: str = "",
                         target_type: str = "") -> str:
    """A DuckDB expression rendering a value as PostgreSQL's text input form (for COPY).
    ``target_type``: the existing column's format_type(); a whole number from a DOUBLE or a
    DECIMAL goes to an integer column as an integer (PostgreSQL refuses '1.0' there, and a
    fraction fails as before)."""
    t = duck_type.upper().strip()
    if target_type in _PG_INTEGERS and (t in ("FLOAT", "DOUBLE") or DECIMAL_TYPE.fullmatch(t)):
        return (f"CASE WHEN {ref} = trunc({ref}) THEN coalesce(CAST(TRY_CAST({ref} AS HUGEINT) "
                f"AS VARCHAR), CAST({ref} AS VARCHAR)) ELSE CAST({ref} AS VARCHAR) END")
    if t == "BLOB":
        return f"'\\x' || hex({ref})"
    if t == "TIMESTAMP WITH TIME ZONE":
        return (f"CASE WHEN isfinite({ref}) THEN CAST(timezone('UTC', {ref}) AS VARCHAR) || "
                f"'+00' ELSE CAST({ref} AS VARCHAR) END")
    element = list_element(duck_type)
    if element is not None and target_category == "A" and not is_nested(element):
        quoted = ("CASE WHEN x IS NULL THEN 'NULL' ELSE '\"' || replace(replace(CAST(x AS "
                  "VARCHAR), '\\', '\\\\'), '\"', '\\\"') || '\"' END")
        return (f"CASE WHEN {ref} IS NULL THEN NULL ELSE '{{' || array_to_string("
                f"list_transform({ref}, lambda x: {quoted}), ',') || '}}' END")
    if is_nested(t):
        return f"CAST(to_json({ref}) AS VARCHAR)"
    return f"CAST({ref} AS VARCHAR)"


def json_expression(ref: str, duck_type: str) -> str:
    """A DuckDB expression giving the JSON value PostgREST should receive for a column."""
    t = duck_type.upper().strip()
    if t in ("FLOAT", "DOUBLE"):
        return _float_json(ref)
    element = list_element(t)
    if element in ("FLOAT", "DOUBLE"):  # to_json writes NaN and Infinity bare: not JSON
        return (f"CASE WHEN {ref} IS NOT NULL THEN '[' || array_to_string(list_transform("
                f"{ref}, lambda x: coalesce(CAST({_float_json('x')} AS VARCHAR), 'null')), ',') "
                "|| ']' END")
    if t == "BLOB":
        return f"to_json('\\x' || hex({ref}))"
    if t == "JSON":  # its own text: to_json would parse it again, with doubles
        return ref
    if t == "TIMESTAMP WITH TIME ZONE":
        return f"to_json({copy_text_expression(ref, duck_type)})"
    return f"to_json({ref})"


def _float_json(ref: str) -> str:
    """A float as PostgREST takes it: NaN and the infinities as the strings PostgreSQL reads."""
    return (f"CASE WHEN isnan({ref}) THEN '\"NaN\"'::JSON WHEN isinf({ref}) AND {ref} > 0 "
            f"THEN '\"Infinity\"'::JSON WHEN isinf({ref}) THEN '\"-Infinity\"'::JSON "
            f"ELSE to_json({ref}) END")


# == REST channel =================================================================================


class _RestWrite:
    def __init__(self, ctx: StepContext, opts: Options, rest: RestParams, relation: str,
                 columns: list[tuple[str, str]], total: int) -> None:
        self.total = total  # the input's rows, counted before any request (see _post_all)
        self.ctx, self.opts, self.rest = ctx, opts, rest
        self.relation, self.columns = relation, columns
        self.url = rest.table_url(opts.table)
        self.label = f"{opts.schema}.{opts.table}"

    def run(self) -> int:
        opts = self.opts
        if opts.mode == "replace" and len(opts.primary_key) != 1:
            raise DriverError(
                f"{COMPONENT} step '{self.ctx.step_id}': write_mode 'replace' over the REST API "
                "needs a one-column `primary_key` (to delete the rows not in the input); use a "
                "SQL channel (pg_dsn) for composite keys.")
        http = PostgrestClient(self.ctx, self.rest, component=COMPONENT, timeout=opts.timeout,
                               retries=opts.retries)
        try:
            self._check_table(http)
            rows = self._post_all(http)
            if opts.mode == "replace":
                self._delete_stale(http)
            committed(self.ctx)  # whatever fails from here on must not write them again
            return rows
        finally:
            http.close()

    def _check_table(self, http: PostgrestClient) -> None:
        resp = http.request("GET", self.url, what=f"checking table {self.label}",
                            params={"select": "*", "limit": "0"},
                            headers=profile_headers(self.opts.schema, False),
                            allow_statuses={404})
        if resp.status_code != 404:
            return
        ddl = create_table_ddl(self.opts.schema, self.opts.table, self.columns,
                               self.opts.primary_key)
        path = self.ctx.artifacts_dir / "ddl_plan.sql"
        path.write_text(ddl + ";\n", encoding="utf-8")
        self.ctx.log_event("table.ddl_planned", table=self.label, ddl_path=str(path))
        how = ("the REST API cannot create tables: run the DDL in " + str(path) +
               " (SQL editor) or add a SQL channel (pg_dsn) to the @supabase connection"
               if self.opts.create_if_missing else "create it (DDL in " + str(path) + ")")
        raise DriverError(f"{COMPONENT} step '{self.ctx.step_id}': table {self.label} does not "
                          f"exist at {self.rest.host}; {how}.")

    def _json_batches(self) -> Iterator[list[str]]:
        """Each row as a JSON object's text, put together from each value's own JSON text:
        a JSON value nested in another (``to_json(struct_pack(c := to_json(c)))``) is parsed
        again by DuckDB, with doubles, which rounded every DECIMAL past ~16 digits."""
        members = " || ',' || ".join(
            f"{quote_literal(json.dumps(n, ensure_ascii=False) + ':')} || "
            f"coalesce(CAST({json_expression(quote_ident(n), t)} AS VARCHAR), 'null')"
            for n, t in self.columns)
        sql = f"SELECT '{{' || {members} || '}}' FROM {self.relation}"
        return row_lists(self.ctx.con, sql, self.opts.batch_size,
                         lambda batch: batch.column(0).to_pylist())

    def _post_all(self, http: PostgrestClient) -> int:
        opts = self.opts
        prefer = ["return=minimal"]
        params: dict[str, str] = {}
        if opts.mode in ("upsert", "replace"):
            prefer.append("resolution=merge-duplicates")
            params["on_conflict"] = ",".join(opts.primary_key)
        headers = {"Content-Type": "application/json", "Prefer": ",".join(prefer),
                   **profile_headers(opts.schema, True)}
        rows = 0
        progress = Progress(self.ctx)
        try:
            for batch in self._json_batches():
                body = ("[" + ",".join(batch) + "]").encode("utf-8")
                first, last = rows + 1, rows + len(batch)
                try:
                    http.request("POST", self.url, params=params or None, data=body,
                                 headers=headers,
                                 what=f"writing rows {first}-{last} to {self.label}"
                                      + (f" ({rows} rows were already written: the REST API "
                                         "commits each batch)" if rows else ""))
                except OutcomeUnknownError as exc:
                    raise self._batch_may_have_landed(exc, first, last) from None
                except DriverError as exc:
                    if rows and opts.mode == "append":  # a step retry would append them again
                        raise NotRetryableError(
                            f"{exc} Rows {first}-{self.total} were not sent; rows 1-{rows} "
                            "are in the table.") from None
                    raise
                rows += len(batch)
                if opts.mode == "append":  # in the table now: an error after this (even a
                    committed(self.ctx)     # log write) must not let a retry append them again
                progress.add(len(batch))
            progress.done()
        except StepCancelled:  # a step timeout or the run terminated, between two batches
            total = self.total  # no query now: the stop keeps interrupting this connection
            if rows == total:
                return rows  # everything was written: the stop came too late to matter
            if rows and opts.mode == "append":
                raise self._stopped_part_way(rows, total) from None
            raise
        return rows

    def _stopped_part_way(self, rows: int, total: int) -> NotRetryableError:
        """An append stopped after some batches: those are written, and a retry would append
        them again."""
        self.ctx.log_event("write.stopped_part_way", table=self.label, rows_written=rows,
                           rows_total=total)
        return NotRetryableError(
            f"{COMPONENT} step '{self.ctx.step_id}': stopped (step timeout or run terminated) "
            f"after rows 1-{rows} of {total} were written to {self.label} at {self.rest.host} "
            f"(the REST API commits each batch); rows {rows + 1}-{total} were not sent. Running "
            f"the step again appends rows 1-{rows} again: to make the write safe to repeat, use "
            "write_mode: upsert with primary_key: [<key columns>], or a SQL channel (pg_dsn), "
            "which writes all rows in one transaction.")

    def _batch_may_have_landed(self, exc: OutcomeUnknownError, first: int, last: int
                               ) -> OutcomeUnknownError:
        """The append batch ``first``-``last`` reached the server and its answer was an error
        or never came: say which rows may be there, how to check, and how to make it safe."""
        total = self.total
        self.ctx.log_event("write.outcome_unknown", table=self.label, rows_from=first,
                           rows_to=last, rows_written_before=first - 1, reason=exc.reason)
        before = f"rows 1-{first - 1} were written (each batch commits on its own)" \
            if first > 1 else "no earlier batch was written"
        after = f"; rows {last + 1}-{total} were not sent" if last < total else ""
        return OutcomeUnknownError(
            f"{COMPONENT} step '{self.ctx.step_id}': writing rows {first}-{last} of {total} "
            f"to {self.label} at {self.rest.host}: {exc.reason} after the batch was sent. "
            f"These rows may have been written (the server may have committed them before "
            f"failing), so they were not sent again: in write_mode append a second attempt "
            f"would write them twice. So far {before}{after}. To check, count the rows of "
            f"{self.label} (e.g. SELECT count(*) FROM {self.label} in the SQL editor) and "
            f"compare with the count before this run: +{first - 1} means the batch did not "
            f"land, +{last} that it did. Running the step again appends all {total} rows "
            f"again; to make the write safe to repeat, use write_mode: upsert with "
            f"primary_key: [<key columns>] (rows already there are merged, not duplicated), "
            f"or a SQL channel (pg_dsn), which writes all rows in one transaction.",
            reason=exc.reason)

    def _delete_stale(self, http: PostgrestClient) -> None:
        key = self.opts.primary_key[0]
        ref = quote_ident(key)
        con = self.ctx.con
        headers = {"Prefer": "return=minimal", **profile_headers(self.opts.schema, True)}
        what = f"deleting rows of {self.label} that are not in the input"
        count = int(scalar(con, f"SELECT count(DISTINCT {ref}) FROM {self.relation}"))
        if count == 0:
            http.request("DELETE", self.url, params={key: "not.is.null"}, headers=headers,
                         what=what)
            return
        if count <= 1000:
            keys = [r[0] for r in con.execute(
                f"SELECT DISTINCT CAST({ref} AS VARCHAR) FROM {self.relation} "
                f"WHERE {ref} IS NOT NULL").fetchall()]
            value = f"not.in.({','.join(quote_in_value(k) for k in keys)})"
            if len(value) <= _URL_BUDGET:
                http.request("DELETE", self.url, params={key: value}, headers=headers,
                             what=what)
                return
        stale = self._stale_keys(http, key)
        for i in range(0, len(stale), _DELETE_CHUNK):
            chunk = stale[i:i + _DELETE_CHUNK]
            http.request("DELETE", self.url, headers=headers, what=what,
                         params={key: f"in.({','.join(quote_in_value(k) for k in chunk)})"})
        self.ctx.log_event("replace.deleted_stale", table=self.label, rows=len(stale))

    def _stale_keys(self, http: PostgrestClient, key: str) -> list[str]:
        """Existing keys not in the input, compared in DuckDB with the key's own type."""
        duck_type = dict(self.columns)[key]
        con = self.ctx.con
        tmp = quote_ident(f"__osiris_existing_keys_{self.ctx.step_id}")
        con.execute(f"CREATE OR REPLACE TEMP TABLE {tmp} (k {duck_type})")
        try:
            offset, page = 0, 1000
            headers = profile_headers(self.opts.schema, False)
            while True:
                resp = http.request("GET", self.url, headers=headers,
                                    what=f"reading the keys of {self.label}",
                                    params={"select": key, "order": f"{key}.asc",
                                            "limit": str(page), "offset": str(offset)})
                # a number as its digits: as a float, 123456789012345678.01 would be another key
                values = [row.get(key) for row in json.loads(resp.text, parse_float=Decimal)]
                if values:
                    con.execute(f"INSERT INTO {tmp} SELECT CAST(unnest(?::VARCHAR[]) AS "
                                f"{duck_type})",
                                [[None if v is None else _text(v) for v in values]])
                if not values:  # a short page is not the end: db-max-rows caps each page
                    break
                offset += len(values)
            ref = quote_ident(key)
            return [r[0] for r in con.execute(
                f"SELECT CAST(e.k AS VARCHAR) FROM {tmp} AS e WHERE e.k IS NOT NULL AND NOT "
                f"EXISTS (SELECT 1 FROM {self.relation} AS r WHERE r.{ref} = e.k)").fetchall()]
        finally:
            with contextlib.suppress(Exception):
                con.execute(f"DROP TABLE IF EXISTS {tmp}")


def _text(value: Any) -> str:
    if isinstance(value, str | Decimal):
        return str(value)
    return json.dumps(value)
