"""Why a CSV read failed, said with the user's file, line and what to do next.

DuckDB's rejects table places a bad record (:mod:`rejects <.rejects>`); the line finders turn its
byte position into the user's physical line, or scan the file for what DuckDB does not place
(:mod:`error_lines <.error_lines>`). Errors that are not about a record (out of memory, a file
that is not gzip) are told by DuckDB's message.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import duckdb

from osiris_dagster.core import memory
from osiris_dagster.core.errors import DriverError
from osiris_dagster.drivers.csv.duckdb_errors import duckdb_summary
from osiris_dagster.drivers.csv.error_lines import (
    find_long_line,
    find_undecodable_line,
    find_wide_record,
    locate_line,
    record_at,
    undecodable_line_at,
)
from osiris_dagster.drivers.csv.read_csv_call import Reader
from osiris_dagster.drivers.csv.records import (
    MAX_LINE_BYTES,
    CsvSyntaxError,
    Layout,
    Record,
)
from osiris_dagster.drivers.csv.rejects import (
    INVALID_ENCODING,
    LINE_TOO_LONG,
    TOO_MANY_COLUMNS,
    UNQUOTED_VALUE,
    Rejection,
    first_rejection,
)
from osiris_dagster.drivers.csv.source import Source, encoding_error


@dataclass(frozen=True)
class FailedRead:
    """A ``read_csv`` call that failed, with what it read and how."""

    con: duckdb.DuckDBPyConnection
    source: Source
    layout: Layout
    reader: Reader
    delimiter: str
    comment: str | None

    def explain(self, exc: duckdb.Error) -> DriverError:
        """Turn a DuckDB failure into a message with the file, the line and what to do."""
        text, origin = str(exc), self.source.origin
        if memory.is_out_of_memory(exc):  # the runner retries with more memory, or says so
            return DriverError(f"{origin}: {duckdb_summary(exc)}")
        if isinstance(exc, duckdb.IOException) and "gzip" in text.lower():
            # not a rejected record: DuckDB raises it again when asked to store rejects
            return DriverError(f"{origin}: cannot decompress as gzip ({duckdb_summary(exc)})."
                               " Check the `compression` option.")
        rejection = first_rejection(self.con, replace(self.reader, parallel=False).sql)
        explained = self._rejection_error(rejection) if rejection is not None else None
        if explained is not None:
            return explained
        wide = self._wide_row_error()
        if wide is not None:
            return wide
        return DriverError(f"{origin}: cannot read the CSV file: {duckdb_summary(exc)}. "
                           f"Check `delimiter` (currently {self.delimiter!r}), `encoding` "
                           "and `header`.")

    def _rejection_error(self, rejection: Rejection) -> DriverError | None:
        """The message for the record DuckDB rejected, at its physical line; None for what it
        does not place (the caller then scans the file)."""
        kind, base = rejection.error_type, self.reader.source_offset
        if kind == INVALID_ENCODING:
            return self._encoding_error(
                None if base is None else base + rejection.error_position)
        if kind == LINE_TOO_LONG and self.reader.max_line_size:
            # (without it, the probe hit DuckDB's 2 MiB default: not the limit the read failed on)
            line = locate_line(self.source, base + rejection.record_position)[0] \
                if base is not None else find_long_line(self.source, MAX_LINE_BYTES)
            where = f"line {line}" if line else "a row"
            return DriverError(f"{self.source.origin}: {where} is longer than "
                               f"{MAX_LINE_BYTES >> 20} MiB. Check the `delimiter` option and "
                               "the quoting (an unclosed quote makes the rest of the file one "
                               "row).")
        if kind in (TOO_MANY_COLUMNS, UNQUOTED_VALUE) and base is not None:
            try:
                rec = record_at(self.source, self.delimiter, self.comment,
                                base + rejection.record_position)
            except CsvSyntaxError as exc:
                return exc
            if rec is not None and self._field_count(rec) > self.layout.width:
                return self._too_wide_error(rec)
        return None

    def _encoding_error(self, position: int | None) -> DriverError:
        """Bytes that do not decode, at the line holding ``position`` when DuckDB gave one that
        is the user's, else at the first such line of the file."""
        found = undecodable_line_at(self.source, position) if position is not None else None
        found = found or find_undecodable_line(self.source)
        line, reason = found if found else (None, "invalid byte sequence")
        return encoding_error(self.source.origin, self.source.encoding, line, reason)

    def _wide_row_error(self) -> DriverError | None:
        """Scan the file for the first row wider than the header (or invalid CSV)."""
        try:
            rec = find_wide_record(self.source, self.layout, self.delimiter, self.comment,
                                   self.reader.null_values)
        except CsvSyntaxError as exc:
            return exc
        return self._too_wide_error(rec) if rec is not None else None

    def _field_count(self, rec: Record) -> int:
        return len(rec.fields)

    def _too_wide_error(self, rec: Record) -> DriverError:
        what = "the header has" if self.layout.header is not None else "the first row has"
        return DriverError(
            f"{self.source.origin}: line {rec.first_line} has {self._field_count(rec)} fields "
            f"but {what} {self.layout.width} (delimiter {self.delimiter!r}). Quote values "
            "that contain the delimiter, fix that row, or check the `delimiter` and `header` "
            "options."
        )
