"""``mysql.writer``: the first upstream table -> a MySQL/MariaDB table, in one transaction.

Osiris has no runtime driver for this component (its legacy connector used pandas ``to_sql``).
Here:

* **Modes.** ``append`` inserts; ``replace`` deletes every row of the target and inserts the
  input (a table other rows reference through foreign keys is replaced by its key instead:
  update, delete the rest, insert, so their ON DELETE rules fire only for the keys that go:
  ``_keys_to_keep``);
  ``upsert`` updates the rows whose key matches and inserts the others (see Staging) and needs
  ``upsert_keys``, which must be the columns of the table's PRIMARY KEY or of a UNIQUE index.
  ``truncate_before`` empties the table first (any mode). Emptying uses ``DELETE`` inside the
  transaction, not ``TRUNCATE`` (which commits implicitly), so a failure restores the old rows.
* **One transaction.** Rows are streamed out of DuckDB as Arrow batches of ``batch_size`` rows
  (never the whole table) and sent with ``executemany`` (pymysql turns each batch into multi-row
  ``INSERT ... VALUES (...), (...)`` statements of up to ~4 MB). Everything runs in one InnoDB
  transaction with ``STRICT_ALL_TABLES`` added to the session's sql_mode, so a value that does
  not fit (too long, out of range) fails the step instead of being silently truncated, and the
  target is left exactly as it was.
* **Staging.** An upsert, and any write to a non-transactional table (MyISAM, Aria: they cannot
  roll back), first loads the rows into a temporary table with the target's types, collations
  and CHECK constraints for the input's columns, so a value the target refuses fails before
  the target is touched. Two input rows with one key as MySQL
  compares them (a ``_ci`` collation makes 'a' and 'A' one key) then fail, where ON DUPLICATE
  KEY UPDATE kept the last silently. The upsert itself is an UPDATE of the rows whose key
  matches and an INSERT of the others, not ON DUPLICATE KEY UPDATE, which fires on any unique
  index (a prefix index, a generated column, a column left to its default) and so updated
  another row: such a row fails as a duplicate, as in PostgreSQL. On a non-transactional
  table the staged rows are also checked for what the final statements would fail on part-way
  (:mod:`osiris_dagster.drivers.mysql.table_guard`: a NULL into NOT NULL, a repeated unique
  value). A failure of those final statements on a non-transactional table is not retried
  (the rows that landed would be written again). A table the writer creates for an upsert
  gets a binary collation without padding on its text key columns (``utf8mb4_nopad_bin`` /
  ``utf8mb4_0900_bin``). MariaDB refuses INSERT ... SELECT into a table whose NOT NULL
  column (without a default) is filled by a BEFORE INSERT trigger: such a table takes
  appends, not upserts.
* **Values kept exactly.** MySQL stores some values that do not fit an existing column without an
  error, even in strict mode (more decimals than a DECIMAL's scale, a fraction into an integer, a
  DOUBLE into a FLOAT, fractional seconds past the column's precision, a time of day into a DATE,
  1-99 into a YEAR): every value is checked first (:mod:`osiris_dagster.drivers.target_fit`),
  and one that would change fails the step naming it, before anything is written.
* **A COMMIT without an answer.** When the connection breaks during ``COMMIT``, the server may
  have applied it and lost only its answer: the step fails saying the rows may or may not have
  been written and how to check. For ``append`` (without ``truncate_before``) that failure is an
  :class:`OutcomeUnknownError`, which neither Dagster's retry policy nor anything else repeats
  (a second write would duplicate the rows); the other modes give the same end state when run
  again. A table the step created is then kept (it may hold the committed rows).
* **create_table.** A missing table is created from the DuckDB schema when ``create_table`` is
  true (``ENGINE=InnoDB``, utf8mb4; with ``upsert_keys`` as PRIMARY KEY), else the step fails.
  MySQL DDL commits implicitly, so a table created by a step whose insert then fails is dropped
  again. The DDL is written to ``artifacts/<step>/ddl_plan.sql``.

  ===========================  ===========================================
  DuckDB                       MySQL column created
  ===========================  ===========================================
  BOOLEAN                      TINYINT(1)
  TINYINT..BIGINT, U*INT       same width, UNSIGNED for unsigned types
  HUGEINT                      DECIMAL(39,0)
  DECIMAL(p,s)                 DECIMAL(p,s)
  FLOAT / DOUBLE               FLOAT / DOUBLE (NaN written as NULL; infinity fails)
  DATE / TIME                  DATE / TIME(6)
  TIMESTAMP[_S/_MS/_NS]        DATETIME(6) (DATETIME / DATETIME(3))
  TIMESTAMPTZ                  DATETIME(6), the UTC wall-clock time
  VARCHAR                      LONGTEXT (VARCHAR(255) for key columns)
  BLOB                         LONGBLOB (VARBINARY(255) for key columns)
  JSON, LIST, STRUCT, MAP      JSON (nested values as JSON text)
  UUID / INTERVAL / others     CHAR(36) / VARCHAR(64) / LONGTEXT
  ===========================  ===========================================

* Input columns must exist in the target (names compared case-insensitively, as MySQL does);
  target columns the input lacks get their defaults.

Returns ``target="mysql://host:port/database.table"`` (no credentials).
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from osiris_dagster.core.errors import DriverError, NotRetryableError, OutcomeUnknownError
from osiris_dagster.core.naming import quote_ident
from osiris_dagster.drivers.base import (
    DriverResult,
    StepColumnLineage,
    StepContext,
    UpstreamTable,
    commit_started,
    committed,
)
from osiris_dagster.drivers.dbapi import close_quietly, rollback_quietly
from osiris_dagster.drivers.duck_types import is_nested
from osiris_dagster.drivers.error_text import first_line
from osiris_dagster.drivers.identifiers import mysql_ident
from osiris_dagster.drivers.lost_commit import lost_commit_note
from osiris_dagster.drivers.mysql.connection import (
    MySQLParams,
    mysql_connect,
    mysql_error,
    mysql_error_code,
    mysql_params,
)
from osiris_dagster.drivers.mysql.references import Reference, references_to
from osiris_dagster.drivers.mysql.table_guard import (
    Refused,
    Write,
    refuse_partial_writes,
    staged_key_copy,
)
from osiris_dagster.drivers.mysql.types import mysql_ddl_type
from osiris_dagster.drivers.options import name_list, positive_int, required_text
from osiris_dagster.drivers.progress import Progress
from osiris_dagster.drivers.session_reads import first_upstream, refuse_null_keys, row_lists
from osiris_dagster.drivers.target_fit import (
    MYSQL_COLUMNS_SQL,
    TargetColumn,
    check_values_fit,
    mysql_target_columns,
)
from osiris_dagster.drivers.text_times import mysql_changed_text

COMPONENT = "mysql.writer"
_NAME = re.compile(r"\w+")  # a character set or collation name, written into DDL as is
_MODES = ("append", "replace", "upsert")
_MAX_STMT = 4 * 1024 * 1024


@dataclass(frozen=True)
class Options:
    table: str
    schema: str | None
    mode: str
    upsert_keys: list[str] | None
    batch_size: int
    create_table: bool
    truncate_before: bool

    @classmethod
    def from_config(cls, config: Mapping[str, Any],
                    connection: Mapping[str, Any] | None = None) -> Options:
        table = required_text(config, "table", COMPONENT, "the MySQL table to write")
        mode = str(config.get("mode") or "append").lower()
        if mode not in _MODES:
            raise DriverError(f"{COMPONENT}: `mode` must be one of {', '.join(_MODES)}, got "
                              f"{config.get('mode')!r}")
        keys = config.get("upsert_keys")
        if isinstance(keys, str):
            keys = [keys]
        keys = name_list(keys, "upsert_keys")
        if mode == "upsert" and not keys:
            raise DriverError(f"{COMPONENT}: mode 'upsert' needs `upsert_keys` (the PRIMARY KEY "
                              "or UNIQUE index columns that identify a row)")
        schema = config.get("schema") or (connection or {}).get("schema")
        return cls(table=table, schema=str(schema) if schema else None, mode=mode,
                   upsert_keys=keys,
                   batch_size=positive_int(config, "batch_size", 1000) or 1000,
                   create_table=bool(config.get("create_table", False)),
                   truncate_before=bool(config.get("truncate_before", False)))


def run(ctx: StepContext, config: Mapping[str, Any],
        inputs: Sequence[UpstreamTable]) -> DriverResult:
    opts = Options.from_config(config, ctx.connection)
    relation, columns = first_upstream(COMPONENT, ctx, inputs)
    params = mysql_params(COMPONENT, ctx.connection, config)
    target = params.target(opts.table, opts.schema)
    writer = _Writer(ctx, opts, params, relation, columns)
    rows = writer.run()
    ctx.log_metric("rows_written", rows)
    return DriverResult(table=None, rows_read=rows, rows_written=rows, target=target,
                        extra_metadata={"mode": opts.mode, "created_table": writer.created},
                        column_lineage=StepColumnLineage.pass_through(
                            inputs[0].step_id, [name for name, _ in columns]))


def repeats_safely(config: Mapping[str, Any]) -> bool:
    """A replace, an upsert or a write with ``truncate_before`` gives the same end state when
    run again on the same input (see :mod:`osiris_dagster.runtime.unsettled_writes`)."""
    return str(config.get("mode") or "append").lower() != "append" or \
        bool(config.get("truncate_before"))


class _Writer:
    def __init__(self, ctx: StepContext, opts: Options, params: MySQLParams, relation: str,
                 columns: list[tuple[str, str]]) -> None:
        self.ctx, self.opts, self.params = ctx, opts, params
        self.relation, self.columns = relation, columns
        self.created = False
        self.commit_sent = False  # from here on the rows may have landed
        self.transactional = True  # False: MyISAM, Aria, ... cannot roll a failed write back
        self.stage = mysql_ident(f"_osiris_stage_{uuid.uuid4().hex[:12]}", "table")
        self.auto_increment: set[str] = set()  # the target's AUTO_INCREMENT column, lowered
        # a replace of a table other rows reference: its key columns (see _keys_to_keep)
        self.replace_keys: list[str] = []
        # the target's columns those references point at, and those of its unique keys
        self.referenced: set[str] = set()
        self.own_references: set[str] = set()  # its own foreign key columns
        # references onto other columns than the key a replace goes by (see _refuse_moved_keys)
        self.other_references: list[Reference] = []
        self.targets: dict[str, TargetColumn] = {}  # an existing table's columns
        self.column_rows: dict[str, Sequence[Any]] = {}  # their MYSQL_COLUMNS_SQL rows
        self.schema = opts.schema or params.database
        qualified = mysql_ident(opts.table, "table")
        if opts.schema:
            qualified = f"{mysql_ident(opts.schema, 'schema')}.{qualified}"
        self.qualified = qualified
        self.label = f"{self.schema}.{opts.table}"

    def _fail(self, action: str, exc: BaseException, note: str = "",
              hint: str | None = None) -> DriverError:
        return mysql_error(COMPONENT, self.ctx.step_id, self.params, action, exc, note, hint)

    def run(self) -> int:
        import pymysql

        if self.opts.mode == "upsert":
            refuse_null_keys(self.ctx.con, self.relation, self._keys(),
                             f"{COMPONENT} step '{self.ctx.step_id}'", "upsert_keys",
                             "mode upsert")

        conn = mysql_connect(COMPONENT, self.ctx.step_id, self.params, streaming=False,
                             raw_values=False)
        try:
            cur = conn.cursor()
            cur.max_stmt_length = _MAX_STMT
            try:
                cur.execute("SET SESSION sql_mode = "
                            "CONCAT_WS(',', NULLIF(@@sql_mode, ''), 'STRICT_ALL_TABLES')")
                existing = self._target_columns(cur)
            except pymysql.Error as exc:
                raise self._fail(f"inspecting table {self.label}", exc) from None
            if existing is None:
                self._create(cur)
            else:
                self._check_columns(existing)
                if self.opts.mode == "upsert":
                    self._check_unique_key(cur)
                self._check_values_fit(cur)
                if self.opts.mode == "replace" and not self.opts.truncate_before and \
                        self.transactional:
                    self.replace_keys = self._keys_to_keep(cur)
            try:
                if self.created:  # the new columns are targets too: the same value checks
                    self._target_columns(cur)
                    self._check_values_fit(cur)
                return self._write(conn, cur)
            except BaseException:
                rollback_quietly(conn)
                if self.created and not self.commit_sent:  # it may hold committed rows
                    with contextlib.suppress(Exception):
                        cur.execute(f"DROP TABLE IF EXISTS {self.qualified}")
                    self.created = False
                raise
        finally:
            close_quietly(conn)

    # -- target inspection ------------------------------------------------------------------
    def _target_columns(self, cur: Any) -> list[str] | None:
        cur.execute("SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND "
                    "TABLE_NAME = %s", (self.schema, self.opts.table))
        row = cur.fetchone()
        if row is None:
            return None
        engine = row[0]
        if engine and str(engine).upper() not in ("INNODB", "ROCKSDB", "TOKUDB", "NDBCLUSTER"):
            self.transactional = False
            self.ctx.log_event("mysql_non_transactional_target", table=self.label,
                               engine=str(engine))
        cur.execute(MYSQL_COLUMNS_SQL, (self.schema, self.opts.table))
        rows = cur.fetchall()
        self.targets = mysql_target_columns(rows)
        self.column_rows = {str(r[0]).lower(): r for r in rows}
        return [t.name for t in self.targets.values()]

    def _check_columns(self, existing: list[str]) -> None:
        have = {c.lower() for c in existing}
        missing = [name for name, _ in self.columns if name.lower() not in have]
        if missing:
            raise DriverError(
                f"{COMPONENT} step '{self.ctx.step_id}': table {self.label} on MySQL "
                f"{self.params.host}:{self.params.port} has no column(s) "
                f"{', '.join(repr(m) for m in missing)} (it has: {', '.join(existing)}). Add "
                "them to the table, or select only the target's columns upstream.")

    def _check_unique_key(self, cur: Any) -> None:
        keys = self._keys()
        cur.execute("SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS WHERE "
                    "TABLE_SCHEMA = %s AND TABLE_NAME = %s AND NON_UNIQUE = 0 "
                    "ORDER BY INDEX_NAME, SEQ_IN_INDEX", (self.schema, self.opts.table))
        indexes: dict[str, set[str]] = {}
        for name, col in cur.fetchall():
            indexes.setdefault(str(name), set()).add(str(col).lower())
        wanted = {k.lower() for k in keys}
        if wanted not in indexes.values():
            found = "; ".join(f"{n} ({', '.join(sorted(c))})" for n, c in indexes.items()) or \
                "none"
            raise DriverError(
                f"{COMPONENT} step '{self.ctx.step_id}': upsert into {self.label} needs a "
                f"PRIMARY KEY or UNIQUE index on exactly ({', '.join(keys)}), which the table "
                f"lacks (unique indexes: {found}). Add one, or fix `upsert_keys`.")

    def _keys_to_keep(self, cur: Any) -> list[str]:
        """A replace of a table other rows reference (foreign keys): the key to replace it by
        (a unique key the references point at, else its PRIMARY KEY, whose columns the input
        has), so that the rows whose key comes back are updated in place and only the others
        are deleted. Deleting every row fired each reference's ON DELETE rule: CASCADE deleted
        the referencing rows, SET NULL cleared them and RESTRICT refused the replace, even
        for keys the input brings back. [] (delete every row) when nothing references the
        table, or no such key is in the input and no reference would change a row (RESTRICT
        and NO ACTION refuse the DELETE themselves); else the step fails, before any write."""
        import pymysql

        try:
            references = references_to(cur, self.schema, self.opts.table)
            if not references:
                return []
            cur.execute("SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS "
                        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND NON_UNIQUE = 0 "
                        "ORDER BY INDEX_NAME <> 'PRIMARY', INDEX_NAME, SEQ_IN_INDEX",
                        (self.schema, self.opts.table))
            unique: dict[str, list[str]] = {}
            for index, column in cur.fetchall():
                unique.setdefault(str(index), []).append(str(column))
            # the table's own foreign key columns: a cascade from a row that goes may come
            # back to them (SET NULL through a cycle), see _refuse_lost_rows
            cur.execute("SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE "
                        "TABLE_SCHEMA = %s AND TABLE_NAME = %s AND "
                        "REFERENCED_TABLE_NAME IS NOT NULL", (self.schema, self.opts.table))
            self.own_references = {str(r[0]).lower() for r in cur.fetchall()}
        except pymysql.Error as exc:
            raise self._fail(f"reading the foreign keys that reference {self.label}",
                             exc) from None
        self.referenced = {c.lower() for r in references for c in r.referenced} | {
            c.lower() for columns in unique.values() for c in columns}  # the row's keys
        pointed = {frozenset(c.lower() for c in r.referenced) for r in references}
        names = {n.lower(): n for n, _ in self.columns}
        # a key the references point at first (a row keeps what they point at: matched by
        # the PRIMARY KEY instead, a row whose id the input leaves NULL would be a new row and
        # its old one, with its code that children reference, would go), then PRIMARY
        order = sorted(unique, key=lambda i: (frozenset(c.lower() for c in unique[i])
                                              not in pointed, i != "PRIMARY"))
        for index in order:
            lowered = [c.lower() for c in unique[index]]
            if (index == "PRIMARY" or frozenset(lowered) in pointed) and \
                    all(c in names for c in lowered):
                keys = [names[c] for c in lowered]
                self.other_references = [r for r in references
                                         if frozenset(c.lower() for c in r.referenced) !=
                                         frozenset(lowered)]
                self.ctx.log_event("mysql_replace_by_key", table=self.label, keys=keys,
                                   references=[r.label for r in references])
                return keys
        changing = [r for r in references if r.changes_rows]
        if not changing:
            return []
        keys = "; ".join(f"{i} ({', '.join(c)})" for i, c in unique.items()) or "none"
        raise DriverError(
            f"{COMPONENT} step '{self.ctx.step_id}': {self.label} is referenced by "
            f"{', '.join(f'{r.label} ON DELETE {r.on_delete}' for r in changing)}, and the "
            "input has the columns of none of its keys (PRIMARY KEY, or a unique key those "
            f"references point at: {keys}), so a replace would delete every row and with "
            "them, or their references, the rows that point at the keys coming back. Nothing "
            "was written. Add the key's columns to the input, or use mode upsert.")

    def _keys(self) -> list[str]:
        keys = self.opts.upsert_keys or []
        names = {n.lower(): n for n, _ in self.columns}
        unknown = [k for k in keys if k.lower() not in names]
        if unknown:
            raise DriverError(f"{COMPONENT} step '{self.ctx.step_id}': `upsert_keys` "
                              f"{unknown} are not columns of the input "
                              f"({', '.join(names.values())})")
        return [names[k.lower()] for k in keys]

    def _create(self, cur: Any) -> None:
        import pymysql

        if not self.opts.create_table:
            raise DriverError(
                f"{COMPONENT} step '{self.ctx.step_id}': table {self.label} does not exist on "
                f"MySQL {self.params.host}:{self.params.port}. Create it, or set "
                "`create_table: true` to create it from the input's columns.")
        keys = self._keys() if self.opts.mode == "upsert" else []
        key_set = {k.lower() for k in keys}
        binary = self._binary_collation(cur) if keys else ""
        defs = []
        for name, duck in self.columns:
            kind = mysql_ddl_type(duck)
            if name.lower() in key_set:
                text = f"VARCHAR(255) COLLATE {binary}"  # 'a', 'A', 'a ', 'ä': four keys
                kind = {"LONGTEXT": text, "LONGBLOB": "VARBINARY(255)",
                        "JSON": text}.get(kind, kind) + " NOT NULL"
            defs.append(f"  {mysql_ident(name, 'column')} {kind}")
        if keys:
            defs.append(f"  PRIMARY KEY ({', '.join(mysql_ident(k) for k in keys)})")
        ddl = (f"CREATE TABLE {self.qualified} (\n" + ",\n".join(defs) +
               "\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
        (self.ctx.artifacts_dir / "ddl_plan.sql").write_text(ddl + ";\n", encoding="utf-8")
        try:
            cur.execute(ddl)
        except pymysql.Error as exc:
            raise self._fail(f"creating table {self.label}", exc) from None
        self.created = True
        self.ctx.log_event("table_created", table=self.label, ddl_path="ddl_plan.sql")

    @staticmethod
    def _binary_collation(cur: Any) -> str:
        """A utf8mb4 collation that compares text as its bytes, trailing spaces included (the
        server's default ``_ci`` one makes 'a', 'A' and 'a ' one key): MariaDB's
        ``utf8mb4_nopad_bin``, MySQL 8's ``utf8mb4_0900_bin``, else ``utf8mb4_bin``."""
        import pymysql

        try:
            cur.execute("SELECT COLLATION_NAME FROM information_schema.COLLATIONS WHERE "
                        "COLLATION_NAME IN ('utf8mb4_nopad_bin', 'utf8mb4_0900_bin')")
            found = {str(r[0]) for r in cur.fetchall()}
        except pymysql.Error:
            found = set()
        return next((c for c in ("utf8mb4_nopad_bin", "utf8mb4_0900_bin") if c in found),
                    "utf8mb4_bin")

    # -- data -------------------------------------------------------------------------------
    def _insert_sql(self, table: str) -> str:
        """``INSERT INTO table (input columns) VALUES (%s, ...)`` (the target or the staging
        table)."""
        cols = [mysql_ident(n, "column") for n, _ in self.columns]
        # pymysql %-formats a statement sent with values: a % in a name must be doubled
        names = f"{table} ({', '.join(cols)})".replace("%", "%%")
        return f"INSERT INTO {names} VALUES ({', '.join(['%s'] * len(cols))})"

    def _select_sql(self) -> str:
        # a TIME as its text: Python's time has no 24:00:00 (DuckDB hands over 00:00:00)
        exprs = [f"{f'CAST({e} AS VARCHAR)' if duck.upper() == 'TIME' else e} AS "
                 f"{quote_ident(name)}" for name, duck, e in self._values()]
        return f"SELECT {', '.join(exprs)} FROM {self.relation}"

    def _values(self) -> list[tuple[str, str, str]]:
        """(column, DuckDB type of the value sent, SQL of the value sent) per input column."""
        out = []
        for name, duck in self.columns:
            ref = quote_ident(name)
            t = duck.upper()
            if t == "FLOAT":  # as its own text: a Python float would widen 0.1 to 0.100000001...
                duck = "VARCHAR"
                e = f"CAST(CASE WHEN isnan({ref}) THEN NULL ELSE {ref} END AS VARCHAR)"
            elif t == "DOUBLE":
                e = f"CASE WHEN isnan({ref}) THEN NULL ELSE {ref} END"
            elif t == "TIMESTAMP WITH TIME ZONE":
                e = f"timezone('UTC', {ref})"
            elif is_nested(t):
                e = f"CAST(to_json({ref}) AS VARCHAR)"
            elif t in ("INTERVAL", "TIME WITH TIME ZONE"):  # MySQL reads the text: judged
                duck = "VARCHAR"                              # as a text (1 day 02:00:00)
                e = f"CAST({ref} AS VARCHAR)"
            elif t in ("UUID", "BIT", "HUGEINT", "UHUGEINT") or \
                    t.startswith(("ENUM", "VARINT", "BIGNUM")):  # (Arrow: decimal128 wraps)
                e = f"CAST({ref} AS VARCHAR)"
            else:
                e = ref
            out.append((name, duck, e))
        return out

    def _check_values_fit(self, cur: Any) -> None:
        """Fail, before anything is written, on a value MySQL would store changed without an
        error (see :mod:`osiris_dagster.drivers.target_fit`; texts for temporal columns in
        forms DuckDB does not judge are judged by MySQL, in this session:
        :mod:`osiris_dagster.drivers.text_times`)."""
        import pymysql

        def server(target: TargetColumn, texts: list[str]) -> tuple[str, str] | None:
            try:
                return mysql_changed_text(cur, target, texts)
            except pymysql.Error as exc:
                raise self._fail(f"checking the texts for column {target.name!r} of "
                                 f"{self.label}", exc, self._unchanged(True)) from None

        try:
            check_values_fit(self.ctx.con, self.relation, self._values(),
                             {name: self.targets[name.lower()] for name, _ in self.columns},
                             who=f"{COMPONENT} step '{self.ctx.step_id}'", table=self.label,
                             database="MySQL", alter="ALTER TABLE ... MODIFY `{column}` ...",
                             created=self.created, server=server)
        except DriverError:
            self._refuse_unstorable()  # the plainer reason, when a value is one MySQL lacks
            raise

    def _refuse_unstorable(self) -> None:
        """Fail naming the first value MySQL has no form for: an infinite FLOAT/DOUBLE, a date
        or timestamp outside years 1-9999 (BC, infinity). Run where such a value stopped the
        write (pymysql refuses infinity; Python has no such date), so it costs nothing else."""
        tests = []
        for (name, duck), (_, _, sent) in zip(self.columns, self._values(), strict=True):
            t = duck.upper()
            if t in ("DOUBLE", "FLOAT"):  # (a FLOAT is sent as its text: test the value)
                tests.append((name, f"isinf({quote_ident(name)})"))
            elif t == "DATE" or t.startswith("TIMESTAMP"):  # as sent: a TIMESTAMPTZ in UTC
                tests.append((name, f"(isinf({sent}) OR year({sent}) NOT BETWEEN 1 AND 9999)"))
        if not tests:
            return
        flags = ", ".join(f"coalesce({test}, false)" for _, test in tests)
        cols = ", ".join(f"CAST({quote_ident(name)} AS VARCHAR)" for name, _ in tests)
        row = self.ctx.con.execute(
            f"SELECT {cols}, {flags} FROM (SELECT * FROM {self.relation}) "
            f"WHERE {' OR '.join(f'coalesce({t}, false)' for _, t in tests)} LIMIT 1").fetchone()
        if row is None:
            return
        n = len(tests)
        name, value = next((tests[i][0], row[i]) for i in range(n) if row[n + i])
        what = "infinity" if value.lstrip("-+").lower() in ("inf", "infinity") else \
            "a date outside years 1-9999"
        raise DriverError(
            f"{COMPONENT} step '{self.ctx.step_id}': column '{name}' holds {value!r}, and "
            f"MySQL cannot store {what}. Nothing was written: {self.label} is as it was. Map "
            "such values upstream (to NULL or a value MySQL holds) in a duckdb.processor step.")

    def _batches(self) -> Iterator[list[tuple[Any, ...]]]:
        return row_lists(self.ctx.con, self._select_sql(), self.opts.batch_size, _rows)

    def _sendable(self, batches: Iterator[list[tuple[Any, ...]]]
                  ) -> Iterator[list[tuple[Any, ...]]]:
        """The batches; a date Python cannot hold (BC, infinity, past 9999) fails naming it."""
        try:
            yield from batches
        except OverflowError:
            self._refuse_unstorable()
            raise

    def _write(self, conn: Any, cur: Any) -> int:
        import pymysql

        opts = self.opts
        staged = opts.mode == "upsert" or not self.transactional or bool(self.replace_keys)
        if staged:  # every row in a temporary table first (see _stage)
            written = self._stage(cur)
        conn.begin()
        try:
            if (opts.mode == "replace" and not self.replace_keys) or opts.truncate_before:
                cur.execute(f"DELETE FROM {self.qualified}")
        except pymysql.Error as exc:
            raise self._fail(f"emptying {self.label}", exc, self._unchanged()) from None
        if staged:
            self._from_stage(cur, written)
        else:
            written = self._insert_rows(cur, self._insert_sql(self.qualified), self.label)
        self.commit_sent = True
        commit_started(self.ctx)
        try:
            conn.commit()
        except pymysql.Error as exc:
            raise self._commit_failed(exc, written) from None
        committed(self.ctx)
        self.ctx.log_event("mysql_write_complete", table=self.label, mode=opts.mode,
                           rows=written, created_table=self.created)
        return written

    def _insert_rows(self, cur: Any, insert: str, into: str) -> int:
        """Send the input's rows with ``insert``, batch by batch; returns their number."""
        import pymysql

        written = 0
        progress = Progress(self.ctx)
        for rows in self._sendable(self._batches()):
            try:
                cur.executemany(insert, rows)
            except pymysql.Error as exc:
                self._refuse_unstorable()  # pymysql refuses infinity: name it, with its column
                note = self._unchanged(into != self.label)
                if " at row " in str(exc):
                    note = ("(MySQL's 'row N' counts the rows of one INSERT statement sending "
                            "these input rows, not the input.) " + note)
                raise self._fail(f"writing input rows {written + 1}-{written + len(rows)} to "
                                 f"{into}", exc, note) from None
            written += len(rows)
            progress.add(len(rows))
        progress.done()
        return written

    def _stage(self, cur: Any) -> int:
        """Load the input into a temporary table with the target's types, collations and
        CHECK constraints for its columns (no indexes, triggers or partitions, which a
        temporary table may not take; ``... LIKE`` copied those and failed). A value the
        target would refuse fails here, before the target is touched; then the rows go in
        with one or two statements (:meth:`_from_stage`). A non-transactional target (MyISAM,
        Aria) can then fail only past the point a rollback would have helped."""
        import pymysql

        try:
            cur.execute(f"CREATE TEMPORARY TABLE {self.stage} ({self._stage_columns()})")
            self._copy_checks(cur)
        except pymysql.Error as exc:
            raise self._fail(f"creating a staging table for {self.label}", exc,
                             self._unchanged(True)) from None
        written = self._insert_rows(cur, self._insert_sql(self.stage),
                                    f"a staging table for {self.label}")
        if self.opts.mode == "upsert" or self.replace_keys:
            self._refuse_repeated_keys(cur)
        if not self.transactional:
            self._refuse_partial_write(cur)
        return written

    def _refuse_partial_write(self, cur: Any) -> None:
        """A MyISAM/Aria target cannot roll back: what its final statements would fail on
        (a NULL into NOT NULL, a repeated unique value) fails here, before it is touched."""
        import pymysql

        opts = self.opts
        write = Write(self.schema, opts.table, self.qualified, self.stage, self.label,
                      [n for n, _ in self.columns], opts.mode, bool(opts.truncate_before),
                      self._keys() if opts.mode == "upsert" else [])
        try:
            refuse_partial_writes(cur, write)
        except Refused as exc:
            raise DriverError(
                f"{COMPONENT} step '{self.ctx.step_id}': {exc}, so the write would fail "
                f"part-way into a table that cannot roll back. {self._unchanged(True)} Fix the "
                "input (or the table), then run the step again.") from None
        except pymysql.Error as exc:
            raise self._fail(f"checking the staged rows against {self.label}", exc,
                             self._unchanged(True)) from None

    def _stage_columns(self) -> str:
        """The staging table's columns: the target's type, character set and collation of
        each input column (as :meth:`_target_columns` read them), NULL allowed (an
        AUTO_INCREMENT id the input leaves NULL is numbered by the target, not refused
        here)."""
        found = self.column_rows
        self.auto_increment = {n for n, r in found.items()
                               if "auto_increment" in str(r[7] or "").lower()}
        defs = []
        for name, _ in self.columns:
            column_type, charset, collation = (found[name.lower()][i] for i in (2, 5, 6))
            text = f" CHARACTER SET {charset} COLLATE {collation}" if charset and collation \
                and _NAME.fullmatch(str(charset)) and _NAME.fullmatch(str(collation)) else ""
            defs.append(f"{mysql_ident(name, 'column')} {column_type}{text} NULL")
        return ", ".join(defs)

    def _copy_checks(self, cur: Any) -> None:
        """The target's CHECK constraints (MariaDB's json_valid() of a JSON column among
        them) onto the staging table, so a value one refuses fails before the target is
        touched (a MyISAM table cannot roll back). One that names a column the input lacks,
        or a server without the catalog view, is left to the target."""
        import pymysql

        try:
            cur.execute("SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS WHERE "
                        "CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s",
                        (self.schema, self.opts.table))
            clauses = [str(r[0]) for r in cur.fetchall()]
        except pymysql.Error:
            return
        for clause in clauses:
            with contextlib.suppress(pymysql.Error):
                cur.execute(f"ALTER TABLE {self.stage} ADD CHECK ({clause})")

    def _refuse_repeated_keys(self, cur: Any) -> None:
        """Two input rows with one key as MySQL compares them (a ``_ci`` collation makes 'x'
        and 'X' one key): ON DUPLICATE KEY UPDATE kept the last of them silently."""
        import pymysql

        names = self._stage_keys()
        keys = [mysql_ident(k) for k in names]
        try:
            cur.execute(f"SELECT {', '.join(keys)}, COUNT(*) FROM {self.stage} WHERE "
                        f"{' AND '.join(f'{k} IS NOT NULL' for k in keys)} GROUP BY "
                        f"{', '.join(keys)} HAVING COUNT(*) > 1 LIMIT 1")
            row = cur.fetchone()
        except pymysql.Error as exc:
            raise self._fail(f"checking the input's keys for {self.label}", exc,
                             self._unchanged(True)) from None
        if row is not None:
            value = ", ".join(f"{k}={v!r}" for k, v in zip(names, row, strict=False))
            raise DriverError(
                f"{COMPONENT} step '{self.ctx.step_id}': the input holds {row[-1]} rows with the "
                f"key {value} as {self.label} compares it (its collation may make 'a', 'A' and "
                f"'a ' one value), and the {self.opts.mode} would keep only one of them. "
                f"{self._unchanged(True)} Make the input's keys unique, or give the key column "
                "a binary collation (utf8mb4_bin).")

    def _stage_keys(self) -> list[str]:
        """The key the staged rows are matched by: ``upsert_keys``, or a keyed replace's."""
        return self.replace_keys or self._keys()

    def _from_stage(self, cur: Any, rows: int) -> None:
        """The staged rows into the target. An upsert is an UPDATE of the rows whose key
        matches, then an INSERT of the others, not ON DUPLICATE KEY UPDATE, which fires on any
        unique index and so updated another row whose email (or prefix of a name, or a
        generated column) matched: such a row now fails as a duplicate, as in PostgreSQL.
        A keyed replace (:meth:`_keys_to_keep`) updates the rows that stay (the columns the
        input lacks get their DEFAULT), deletes the rows whose key the input lacks, checks that
        no row that stays went or changed with them (:meth:`_refuse_lost_rows`), then inserts
        the new rows."""
        import pymysql

        cols = ", ".join(mysql_ident(n, "column") for n, _ in self.columns)
        statements: list[str] = []
        delete = ""
        if self.opts.mode == "upsert" or self.replace_keys:
            keys = self._stage_keys()
            lowered = {k.lower() for k in keys}
            match = " AND ".join(f"t.{mysql_ident(k)} = s.{mysql_ident(k)}" for k in keys)
            # an AUTO_INCREMENT value the input leaves NULL (or 0, which MySQL numbers as NULL
            # unless NO_AUTO_VALUE_ON_ZERO) keeps the row's own
            sets = [f"t.{mysql_ident(n)} = COALESCE(IF(@@sql_mode LIKE "
                    f"'%NO_AUTO_VALUE_ON_ZERO%', s.{mysql_ident(n)}, "
                    f"NULLIF(s.{mysql_ident(n)}, 0)), t.{mysql_ident(n)})"
                    if n.lower() in self.auto_increment else
                    f"t.{mysql_ident(n)} = s.{mysql_ident(n)}"
                    for n, _ in self.columns if n.lower() not in lowered]
            if self.replace_keys:
                sets += [f"t.{mysql_ident(n)} = DEFAULT(t.{mysql_ident(n)})"
                         for n in self._columns_to_reset()]
            insert = (f"INSERT INTO {self.qualified} ({cols}) SELECT {cols} FROM "
                      f"{self.stage} s WHERE NOT EXISTS (SELECT 1 FROM "
                      f"{self.qualified} t WHERE {match})")
            update = (f"UPDATE {self.qualified} t JOIN {self.stage} s ON {match} "
                      f"SET {', '.join(sets)}" if sets else None)
            statements += [*([update] if update else []), insert]
            if self.replace_keys:
                delete = (f"DELETE t FROM {self.qualified} t WHERE NOT EXISTS "
                          f"(SELECT 1 FROM {self.stage} s WHERE {match})")
        else:
            statements.append(f"INSERT INTO {self.qualified} ({cols}) SELECT {cols} FROM "
                              f"{self.stage}")
        try:
            if delete:
                self._replace_by_key(cur, statements[:-1], delete, statements[-1])
            else:
                for sql in statements:
                    cur.execute(sql)
            cur.execute(f"DROP TEMPORARY TABLE {self.stage}")
        except pymysql.Error as exc:
            duplicate = mysql_error_code(exc) == 1062 and (
                self.opts.mode == "upsert" or bool(self.replace_keys))
            key = "`upsert_keys`" if self.opts.mode == "upsert" else "the table's key"
            hint = (f"an input row's value for a unique index other than {key} matches an "
                    "existing row, or another input row (rows are updated one by one: two rows "
                    "swapping a unique value fail)" if duplicate else None)
            note = self._unchanged()
            if not self.transactional:
                emptied = " (a replace or truncate_before emptied it first)" if \
                    self.opts.mode == "replace" or self.opts.truncate_before else ""
                note = (f"{self.label} is a non-transactional table (MyISAM, Aria, ...): some "
                        f"of the {rows} rows may be in it{emptied}. Check it before running "
                        "the step again (an InnoDB table is rolled back instead).")
            error = self._fail(f"writing the {rows} rows to {self.label}", exc, note, hint)
            if not self.transactional:  # a retry would add the rows that did land again
                raise NotRetryableError(str(error)) from None
            raise error from None

    def _replace_by_key(self, cur: Any, updates: list[str], delete: str, insert: str) -> None:
        """The rows that stay first (one may stop referencing a row that goes: deleted first,
        that row could take it along through the table's own ON DELETE CASCADE), then the rows
        that go (their unique values are free for new rows), each step checked, then the new
        rows (a NULL key, numbered by AUTO_INCREMENT, matches nothing the DELETE could
        spare)."""
        for sql in updates:  # (none when every column is a key column)
            cur.execute(sql)
        self._refuse_moved_keys(cur)
        staying = self._rows_staying(cur)
        cur.execute(delete)
        self._refuse_lost_rows(cur, staying - self._rows_staying(cur))
        cur.execute(insert)

    def _refuse_moved_keys(self, cur: Any) -> None:
        """A row that goes (its key is not in the input) may hold a value other rows point at
        through another key (a unique code, or a column a MariaDB foreign key points at
        without a unique index) that an input row brings back: deleting the row would fire
        those references' ON DELETE rules for a value that stays. Such a replace fails."""
        if not self.other_references:
            return
        keys = self._stage_keys()
        goes = " AND ".join(f"k.{mysql_ident(k)} = t.{mysql_ident(k)}" for k in keys)
        with staged_key_copy(cur, self.stage, keys) as chosen:
            for reference in self.other_references:
                match = " AND ".join(f"s.{mysql_ident(c)} = t.{mysql_ident(c)}"
                                     for c in reference.referenced)
                held = ", ".join(f"t.{mysql_ident(c)}" for c in reference.referenced)
                cur.execute(f"SELECT {held} "
                            f"FROM {self.qualified} t JOIN {self.stage} s ON {match} WHERE NOT "
                            f"EXISTS (SELECT 1 FROM {chosen} k WHERE {goes}) LIMIT 1")
                row = cur.fetchone()
                if row is not None:
                    value = ", ".join(f"{c}={v!r}" for c, v in zip(reference.referenced, row,
                                                                   strict=False))
                    raise DriverError(
                        f"{COMPONENT} step '{self.ctx.step_id}': a row of {self.label} whose "
                        f"{', '.join(keys)} the input lacks holds {value}, which an input row "
                        f"brings back, and {reference.label} points at it (ON DELETE "
                        f"{reference.on_delete}): deleting that row would take or change "
                        f"what points at a value that stays. {self._unchanged()} Give that "
                        f"input row the {', '.join(keys)} the table has for {value}.")

    def _rows_staying(self, cur: Any) -> int:
        """How many rows of the table hold a key of the input (the rows that stay)."""
        match = " AND ".join(f"t.{mysql_ident(k)} = s.{mysql_ident(k)}"
                             for k in self._stage_keys())
        cur.execute(f"SELECT COUNT(*) FROM {self.stage} s JOIN {self.qualified} t ON {match}")
        return int((cur.fetchone() or (0,))[0])

    def _refuse_lost_rows(self, cur: Any, lost: int) -> None:
        """After the rows that go were deleted, every row that stays must still be there, as
        the input has it: deleting them cascades (a table's own ON DELETE CASCADE, or through
        others) to rows that point at them, and a SET NULL clears such a reference. The
        write then fails and is rolled back (the INSERT that follows would have put a deleted
        row back, without what referenced it)."""
        match = " AND ".join(f"t.{mysql_ident(k)} = s.{mysql_ident(k)}"
                             for k in self._stage_keys())
        given = {n.lower(): n for n, _ in self.columns}
        pointing = [given[c] for c in self.own_references if c in given]
        if not lost and pointing:  # an ON DELETE SET NULL / SET DEFAULT changed one
            differs = " OR ".join(f"NOT (t.{mysql_ident(c)} <=> s.{mysql_ident(c)})"
                                  for c in pointing)
            cur.execute(f"SELECT COUNT(*) FROM {self.stage} s JOIN {self.qualified} t ON "
                        f"{match} WHERE {differs}")
            changed = int((cur.fetchone() or (0,))[0])
            if changed:
                raise DriverError(
                    f"{COMPONENT} step '{self.ctx.step_id}': deleting the rows of {self.label} "
                    f"whose key the input lacks changed {changed} of the input's rows (an ON "
                    f"DELETE SET NULL, of the table onto itself or through another table, "
                    f"cleared their {', '.join(pointing)}: they point, directly or not, at a "
                    "row that goes). "
                    f"{self._unchanged()} Give those rows references the input keeps, or "
                    "delete the rows that go first.")
        if lost:
            raise DriverError(
                f"{COMPONENT} step '{self.ctx.step_id}': deleting the rows of {self.label} "
                f"whose key the input lacks also deleted {lost} of the input's rows (an ON "
                "DELETE CASCADE: they point at a row that goes). "
                f"{self._unchanged()} Give those rows references the input keeps, or delete "
                "the rows that go first.")

    def _columns_to_reset(self) -> list[str]:
        """The target columns a keyed replace gives their DEFAULT: those the input lacks, but
        for an AUTO_INCREMENT or generated column, one a foreign key references and one of a
        unique key (a new value would renumber the row or break what points at it)."""
        given = {n.lower() for n, _ in self.columns}
        reset = []
        for lowered, row in self.column_rows.items():
            extra = str(row[7] or "").lower()
            if lowered in given or lowered in self.auto_increment or \
                    lowered in self.referenced or \
                    any(w in extra for w in ("generated", "virtual", "persistent", "stored")):
                continue
            reset.append(str(row[0]))
        return reset

    def _unchanged(self, staging: bool = False) -> str:
        """What a failure before the COMMIT leaves behind."""
        if self.transactional:
            return (f"Nothing was written: the transaction was rolled back and {self.label} is "
                    "as it was.")
        if staging:
            return (f"Nothing was written: {self.label} was not touched (the rows were only "
                    "staged).")
        return (f"{self.label} is a non-transactional table (MyISAM, Aria, ...), which cannot "
                "roll back: check what it holds.")

    def _commit_failed(self, exc: BaseException, rows: int) -> DriverError:
        """An error the server answered to COMMIT rolled the transaction back. A connection
        lost during COMMIT leaves it unknown whether the server applied it (it may have committed
        and its answer been lost), and nothing can tell which from here: say so, and for an
        append make sure nothing runs it again blindly (a second run would write the rows
        twice)."""
        action = f"committing the write to {self.label}"
        if not _answer_lost(exc):
            self.commit_sent = False  # rolled back: a table the step created is dropped again
            return self._fail(action, exc, note=f"Nothing was written: the transaction was "
                                                f"rolled back and {self.label} is as it was.")
        table = f"{mysql_ident(self.schema, 'schema')}.{mysql_ident(self.opts.table, 'table')}"
        repeatable = self.opts.mode != "append" or self.opts.truncate_before
        mode = f"mode {self.opts.mode}" + (" with truncate_before" if self.opts.truncate_before
                                           else "")
        note = lost_commit_note(rows, table, same_end_state=mode if repeatable else None,
                                append_option="mode append",
                                make_safe="mode: upsert with upsert_keys: [<key columns>], or "
                                          "mode: replace")
        if repeatable:
            return self._fail(action, exc, note=note)
        return OutcomeUnknownError(str(self._fail(action, exc, note=note)),
                                   reason=first_line(exc))


def _answer_lost(exc: BaseException) -> bool:
    """True unless the server answered with an error of its own: client-side errors
    (2000-2999: connection lost or gone, no code at all) mean the answer never arrived."""
    code = mysql_error_code(exc)
    return code is None or 2000 <= code < 3000


def _rows(batch: pa.RecordBatch) -> list[tuple[Any, ...]]:
    if batch.num_rows == 0:
        return []
    return list(zip(*(col.to_pylist() for col in batch.columns), strict=True))
