"""Python values to and from session tables without Dagster (runtime.python_values)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from osiris_dagster.core.errors import OsirisError
from osiris_dagster.core.settings import Settings
from osiris_dagster.runtime.python_values import (
    UnsupportedTypeError,
    close_readers,
    read_table,
    write_value,
)
from osiris_dagster.runtime.session import Session


@pytest.fixture
def session(tmp_path: Path) -> Session:
    return Session(Settings.from_env(str(tmp_path / "s")), "run1")


def test_polars_lazy_frames_are_collected_and_a_column_is_refused(session: Session) -> None:
    pl = pytest.importorskip("polars")
    rows, columns = write_value(session, "t", pl.DataFrame({"a": [1, 2, 3]}).lazy())
    assert rows == 3 and columns == (("a", "BIGINT"),)
    with pytest.raises(UnsupportedTypeError, match=r"a polars\.series\.series\.Series cannot "
                                                   r"become a table; return one of duckdb"):
        write_value(session, "t", pl.Series([1]))


def test_an_empty_frame_still_becomes_a_table(session: Session) -> None:
    assert write_value(session, "t", pa.table({"a": pa.array([], pa.int32())})) == (
        0, (("a", "INTEGER"),))


def test_a_relation_holds_its_read_only_connection_until_closed(session: Session) -> None:
    write_value(session, "t", pa.table({"a": [1, 2]}))
    relation = read_table(session.db_path, "t", duckdb.DuckDBPyRelation, session.settings)
    with pytest.raises(OsirisError, match="already attached"):
        session.open_workspace_connection()  # one process attaches a file once
    assert relation.aggregate("sum(a)").fetchall() == [(3,)]
    assert close_readers(session.db_path) == 1
    session.open_workspace_connection().close()
    with pytest.raises(duckdb.ConnectionException):
        relation.fetchall()


def test_a_reader_closes_its_connection_once_read(session: Session) -> None:
    write_value(session, "t", pa.table({"a": list(range(250_000))}))
    reader = read_table(session.db_path, "t", pa.RecordBatchReader, session.settings)
    assert sum(batch.num_rows for batch in reader) == 250_000
    assert close_readers(session.db_path) == 0
