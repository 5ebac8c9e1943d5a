"""``filesystem.csv_writer``: the first upstream table -> one CSV file, written by DuckDB ``COPY``.

The file matches what Osiris writes with ``DataFrame.to_csv(index=False)`` where that is sensible:

* columns sorted by name (Python string order; all-digit names as numbers), like Osiris;
* NULL and the empty string are both an empty field (a one-column table writes ``""`` so the row
  is not a blank line that readers would skip), booleans are ``True``/``False``, timestamps
  ``YYYY-MM-DD HH:MM:SS[.fff]``, timestamps with a time zone as the same instant in UTC,
  ``YYYY-MM-DD HH:MM:SS[.fff]+00:00`` (whatever the host's zone), numbers as DuckDB prints them
  (``1.0``, ``1e+20``);
* ``quoting``: minimal (only where needed), all (every field, empty ones as ``""``), or
  nonnumeric (every field of a non-numeric column); Osiris ignored this option;
* ``newline`` lf/crlf (cr too), ``delimiter``, ``header``; ``create_dirs: false`` fails when the
  directory is missing (Osiris always created it); a ``path`` naming a directory (``out/``,
  ``out/.``) fails, where pathlib would write a file ``out``;
* ``encoding``: DuckDB only writes UTF-8, so other encodings (ascii, latin-1, utf-16 with a BOM,
  as Python writes it) are produced by streaming the UTF-8 output through Python's codecs; a
  character the encoding cannot represent fails the step, naming the column;
* a ``.gz`` or ``.zst`` target is compressed by DuckDB (``.zst`` in UTF-8 only); ``.bz2``,
  ``.xz`` and ``.zip`` (pandas infers those too) are compressed while streaming;
* the table ``filesystem.csv_extractor`` makes from an empty file (one VARCHAR column ``_empty``,
  no rows) is written as an empty file, as Osiris writes an empty DataFrame; a SQL result of
  that exact shape too (see ``empty_file.py``).

Writes are atomic: everything goes to a hidden temporary file next to the target, which is
fsynced and then renamed over it; on failure the temporary file is removed and an existing target
is left as it was. A replaced file's mode (and owner and group, where permitted) is kept; a
symbolic link stays, and the file it points to is replaced; a file's other hard links keep the
old content (``core/atomic_files.py``). ``chunk_size`` is accepted and ignored (COPY streams).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from osiris_dagster.core.atomic_files import (
    owned_temporary,
    prepare_replacement,
    publish,
    remove_orphaned_temp_files,
    remove_quietly,
    replaced_file,
)
from osiris_dagster.core.errors import DriverError
from osiris_dagster.core.naming import quote_ident, quote_literal
from osiris_dagster.drivers.base import (
    DriverResult,
    StepColumnLineage,
    StepContext,
    UpstreamTable,
    heartbeat,
)
from osiris_dagster.drivers.csv.compression import open_compressed_output, output_compression
from osiris_dagster.drivers.csv.duckdb_errors import duckdb_summary
from osiris_dagster.drivers.csv.empty_file import EMPTY_FILE_COLUMN_TYPED
from osiris_dagster.drivers.csv.output_encoding import TranscodeError, transcode_utf8
from osiris_dagster.drivers.csv.scratch import Scratch

_NEWLINES = {"lf": "\n", "crlf": "\r\n", "cr": "\r", "\n": "\n", "\r\n": "\r\n", "\r": "\r"}
_ENCODINGS = {
    "utf-8": "utf-8", "utf8": "utf-8", "ascii": "ascii", "us-ascii": "ascii",
    "latin-1": "latin-1", "latin1": "latin-1", "iso-8859-1": "latin-1", "iso8859-1": "latin-1",
    "utf-16": "utf-16", "utf16": "utf-16",
}
_NUMERIC = re.compile(
    r"(U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)|FLOAT|DOUBLE|DECIMAL(\(.*\))?|BOOLEAN)")
_QUOTING = ("minimal", "all", "nonnumeric")


@dataclass(frozen=True)
class Options:
    path: str
    delimiter: str = ","
    header: bool = True
    encoding: str = "utf-8"  # normalised: utf-8, ascii, latin-1, utf-16
    newline: str = "\n"
    quoting: str = "minimal"
    create_dirs: bool = True

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Options:
        path = config.get("path")
        if not isinstance(path, str) or not path.strip():
            raise DriverError("filesystem.csv_writer needs `path`: the CSV file to write")
        if os.path.basename(path) in ("", ".", ".."):  # pathlib drops a trailing '/' or '/.'
            example = os.path.join(os.path.normpath(path), "output.csv")
            raise DriverError(f"`path` {path!r} names a directory, not a file: `path` must "
                              f"name the CSV file to write, such as {example!r}")
        delimiter = config.get("delimiter", ",")
        if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
            raise DriverError(f"`delimiter` must be one character other than a quote or line "
                              f"break, got {delimiter!r}")
        encoding = str(config.get("encoding", "utf-8")).strip().lower().replace("_", "-")
        if encoding not in _ENCODINGS:
            raise DriverError(f"unsupported encoding {encoding!r}: use utf-8, ascii, latin-1 or "
                              "utf-16")
        newline = str(config.get("newline", "lf"))
        if newline.lower() in _NEWLINES:
            newline = newline.lower()
        if newline not in _NEWLINES:
            raise DriverError(f"`newline` must be lf or crlf, got {newline!r}")
        quoting = str(config.get("quoting", "minimal")).lower()
        if quoting not in _QUOTING:
            raise DriverError(f"`quoting` must be one of {', '.join(_QUOTING)}, got {quoting!r}")
        return cls(path=path, delimiter=delimiter, header=bool(config.get("header", True)),
                   encoding=_ENCODINGS[encoding], newline=_NEWLINES[newline], quoting=quoting,
                   create_dirs=bool(config.get("create_dirs", True)))


def run(ctx: StepContext, config: Mapping[str, Any],
        inputs: Sequence[UpstreamTable]) -> DriverResult:
    """Write ``inputs[0]`` to ``config['path']``; returns the number of data rows written."""
    opts = Options.from_config(config)
    if not inputs:
        raise DriverError("filesystem.csv_writer needs an upstream step with data: add the step "
                          "that produces the rows to this step's `needs`")
    target = _prepare_target(ctx.resolve_path(opts.path), opts.create_dirs)
    columns = _columns(ctx.con, inputs[0].relation)
    rows = _Write(ctx, opts, target, inputs[0].relation, columns).run()
    ctx.log_metric("rows_written", rows)
    return DriverResult(table=None, rows_read=rows, rows_written=rows, target=str(target),
                        column_lineage=StepColumnLineage.pass_through(
                            inputs[0].step_id, [name for name, _ in columns]))


def _prepare_target(target: Path, create_dirs: bool) -> Path:
    target = target.absolute()
    if target.is_dir():
        raise DriverError(f"{target} is a directory; `path` must name the CSV file to write")
    parent = target.parent
    if not parent.is_dir():
        if not create_dirs:
            raise DriverError(f"cannot write {target}: directory {parent} does not exist. "
                              "Create it, or set `create_dirs: true`.")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DriverError(f"cannot create directory {parent} for {target}: {exc}") from exc
    return target


def _columns(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
    rows = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def _is_numeric(kind: str) -> bool:
    return bool(_NUMERIC.fullmatch(kind.upper()))


class _Write:
    """One atomic write of ``relation`` to ``target``."""

    def __init__(self, ctx: StepContext, opts: Options, target: Path, relation: str,
                 columns: list[tuple[str, str]]) -> None:
        self.ctx = ctx
        self.opts = opts
        self.target = target
        self.relation = relation
        types = dict(columns)
        self.columns = [(name, types[name]) for name in sort_columns(list(types))]
        self.compression = output_compression(target)

    def run(self) -> int:
        try:
            real = replaced_file(self.target)  # a symbolic link stays; its file is replaced
            remove_orphaned_temp_files(real.parent, real.name)
            with owned_temporary(real) as tmp:
                try:
                    like = prepare_replacement(tmp, real)  # the old file's mode and owner
                    rows = self._write(tmp)
                    publish(tmp, real, like=like)
                finally:
                    remove_quietly(tmp)
        except OSError as exc:
            raise DriverError(f"cannot write {self.target}: {exc}") from exc
        return rows

    def _write(self, tmp: Path) -> int:
        if self.compression == "zstd" and self.opts.encoding != "utf-8":
            raise DriverError(f"cannot write {self.target}: a Zstandard (.zst) file is written "
                              f"in UTF-8 only, not {self.opts.encoding}; drop `encoding` or use "
                              "another compression (.gz, .bz2, .xz, .zip)")
        if self._is_empty_file_marker():
            return self._write_text(tmp, self.opts.newline if self.opts.header else "")
        direct = self.opts.encoding == "utf-8" and self.compression in ("none", "gzip", "zstd")
        if direct:
            return self._copy(tmp, compression=self.compression)
        with Scratch(Path(self.ctx.tmp_dir), f"csvw_{self.ctx.step_id}") as scratch:
            utf8 = scratch.new_path()
            rows = self._copy(utf8, compression="none")
            try:
                with open_compressed_output(tmp, self.compression,
                                            _member_name(self.target)) as sink:
                    transcode_utf8(utf8, sink, self.opts.encoding)
            except TranscodeError as exc:
                raise self._unencodable(exc) from exc
        return rows

    def _is_empty_file_marker(self) -> bool:
        if self.columns != [EMPTY_FILE_COLUMN_TYPED]:
            return False
        count = self.ctx.con.execute(f"SELECT count(*) FROM {self.relation}").fetchone()[0]
        return int(count) == 0

    def _write_text(self, tmp: Path, text: str) -> int:
        if self.compression == "zstd":  # no Zstandard in Python: DuckDB writes the line, or none
            rows = "SELECT NULL AS line" + ("" if text else " WHERE false")
            self.ctx.con.execute(
                f"COPY ({rows}) TO {quote_literal(str(tmp))} (FORMAT csv, HEADER false, "
                f"NEW_LINE {quote_literal(text or chr(10))}, COMPRESSION zstd, "
                "USE_TMP_FILE false)")
            return 0
        with open_compressed_output(tmp, self.compression, _member_name(self.target)) as fh:
            fh.write(text.encode(self.opts.encoding) if text else b"")
        return 0

    def _copy(self, path: Path, compression: str) -> int:
        options = [
            "FORMAT csv", f"DELIMITER {quote_literal(self.opts.delimiter)}", "QUOTE '\"'",
            "ESCAPE '\"'", f"HEADER {'true' if self.opts.header else 'false'}",
            f"NEW_LINE {quote_literal(self.opts.newline)}", "NULLSTR ''",
            "USE_TMP_FILE false",  # into the file made for it (prepare_replacement), not anew
        ]
        forced = self._forced_quotes()
        if forced:
            options.append(f"FORCE_QUOTE ({', '.join(quote_ident(n) for n in forced)})")
        if compression != "none":  # gzip or zstd, which DuckDB writes itself
            options.append(f"COMPRESSION {compression}")
        sql = (f"COPY (SELECT {self._select_list()} FROM {self.relation}) "
               f"TO {quote_literal(str(path))} ({', '.join(options)})")
        try:
            with heartbeat(self.ctx):
                result = self.ctx.con.execute(sql).fetchone()
        except duckdb.Error as exc:
            raise DriverError(f"cannot write {self.target}: "
                              f"{duckdb_summary(exc)}") from exc
        return int(result[0]) if result else 0

    def _forced_quotes(self) -> list[str]:
        if self.opts.quoting == "all":
            return [n for n, _ in self.columns]
        if self.opts.quoting == "nonnumeric":
            return [n for n, kind in self.columns if not _is_numeric(kind)]
        return []

    def _select_list(self) -> str:
        """Per column: pandas' rendering of booleans, NULL, NaN and the empty string."""
        forced = set(self._forced_quotes())
        single = len(self.columns) == 1
        exprs = []
        for name, kind in self.columns:
            col = quote_ident(name)
            expr = col
            if kind == "BOOLEAN":
                expr = f"CASE WHEN {col} THEN 'True' WHEN NOT {col} THEN 'False' END"
            elif kind == "TIMESTAMP WITH TIME ZONE":
                expr = _utc_text(col)
            elif kind in ("DOUBLE", "FLOAT"):  # pandas (and Osiris) write NaN as an empty field
                expr = f"CASE WHEN isnan({col}) THEN NULL ELSE {col} END"
            if name in forced or single:
                # '' is written quoted (""): every empty value becomes "" like pandas does for
                # quoted columns, and a one-column row never turns into a blank line
                expr = f"coalesce(CAST({expr} AS VARCHAR), '')"
            elif kind == "VARCHAR":
                expr = f"nullif({col}, '')"  # pandas writes '' unquoted, like NULL
            exprs.append(f"{expr} AS {col}")
        return ", ".join(exprs)

    def _unencodable(self, exc: TranscodeError) -> DriverError:
        column = self._column_containing(exc.char)
        where = f"column {column!r} contains" if column else "the data contains"
        return DriverError(
            f"cannot write {self.target} as {self.opts.encoding}: {where} {exc.char!r} "
            f"(U+{ord(exc.char):04X}, line {exc.line} of the output), which {self.opts.encoding} "
            "cannot represent. Use encoding utf-8 or utf-16, or replace the value upstream."
        )

    def _column_containing(self, char: str) -> str | None:
        """Only on the error path: the first column (or header name) holding the character."""
        for name, _ in self.columns:
            if char in name and self.opts.header:
                return name
            col = quote_ident(name)
            hit = self.ctx.con.execute(
                f"SELECT 1 FROM {self.relation} WHERE contains(CAST({col} AS VARCHAR), ?) "
                "LIMIT 1", [char]).fetchone()
            if hit:
                return name
        return None


def sort_columns(names: Sequence[str]) -> list[str]:
    """Osiris writes ``df[sorted(df.columns)]``; all-digit names (header: false) sort as numbers."""
    if names and all(n.isascii() and n.isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def _utc_text(col: str) -> str:
    """An instant as ``YYYY-MM-DD HH:MM:SS[.ffffff]+00:00``: in UTC whatever the connection's
    TimeZone (DuckDB would print it in that zone), with the offset as pandas and ISO 8601 write
    it, so the file is the same on every host and reads back as the same instant."""
    return (f"CASE WHEN isfinite({col}) THEN CAST(timezone('UTC', {col}) AS VARCHAR) || "
            f"'+00:00' ELSE CAST({col} AS VARCHAR) END")


def _member_name(target: Path) -> str:
    """pandas names the single member of a zip after the archive, minus ``.zip``."""
    return target.name[:-4] if target.name.lower().endswith(".zip") else target.name
