"""Step ids -> SQL view names, session table names and Dagster names."""

from __future__ import annotations

import hashlib

import pytest

from osiris_dagster.core.naming import (
    asset_key_part,
    dagster_name,
    quote_ident,
    quote_literal,
    sanitise,
    table_names,
    upstream_view_names,
)


def h8(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8")).hexdigest()[:8]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("extract-movies", "extract_movies"),
        ("123x", "_123x"),
        ("1", "_1"),
        ("a.b c/d", "a_b_c_d"),
        ("already_ok_9", "already_ok_9"),
        ("_private", "_private"),
        ("Mixed-Case", "Mixed_Case"),
        ("é", "_"),
        ("", "_"),
    ],
)
def test_sanitise(raw, expected):
    assert sanitise(raw) == expected


def test_view_name_for_digit_id():
    assert upstream_view_names(["123x"]) == {"123x": "df__123x"}


def test_view_names_without_collision():
    assert upstream_view_names(["extract-movies", "extract-directors"]) == {
        "extract-movies": "df_extract_movies",
        "extract-directors": "df_extract_directors",
    }


def test_view_name_collision_gets_hash_suffix():
    got = upstream_view_names(["extract-movies", "extract.movies", "other"])
    assert got == {
        "extract-movies": "df_extract_movies_" + h8("extract-movies"),
        "extract.movies": "df_extract_movies_" + h8("extract.movies"),
        "other": "df_other",
    }
    assert got["extract-movies"] != got["extract.movies"]


def test_view_name_collision_is_case_insensitive():
    got = upstream_view_names(["Movies", "movies"])
    assert got == {"Movies": "df_Movies_" + h8("Movies"), "movies": "df_movies_" + h8("movies")}


def test_view_names_empty():
    assert upstream_view_names([]) == {}


def test_table_names_plain():
    assert table_names(["extract-movies", "123x", "stats"]) == {
        "extract-movies": "extract_movies", "123x": "_123x", "stats": "stats"}


def test_table_names_collide_case_insensitively():
    got = table_names(["Movies", "movies", "MOVIES", "directors"])
    assert got == {
        "Movies": "Movies_" + h8("Movies"),
        "movies": "movies_" + h8("movies"),
        "MOVIES": "MOVIES_" + h8("MOVIES"),
        "directors": "directors",
    }
    assert len({v.lower() for v in got.values()}) == 4


def test_table_names_collide_after_sanitising():
    got = table_names(["write-stats", "write_stats"])
    assert got == {"write-stats": "write_stats_" + h8("write-stats"),
                   "write_stats": "write_stats_" + h8("write_stats")}


def test_dagster_name():
    assert dagster_name("movies-demo", "extract.movies") == "movies_demo__extract_movies"
    assert dagster_name("1st") == "_1st"


@pytest.mark.parametrize("name", sorted(__import__(
    "dagster._core.definitions.utils", fromlist=["DISALLOWED_NAMES"]).DISALLOWED_NAMES))
def test_a_name_dagster_reserves_gets_a_trailing_underscore(name):
    """A pipeline called `type`, `input` or `class` passed validate, then `run` crashed (the
    job's name) and `dagster dev` showed it as broken."""
    assert dagster_name(name) == name + "_"
    assert dagster_name(name, "extract") == name + "__extract"


def test_quoting():
    assert quote_ident('we"ird') == '"we""ird"'
    assert quote_literal("it's") == "'it''s'"


def test_asset_key_part():
    assert asset_key_part("extract-movies") == "extract-movies"
    assert asset_key_part("a.b c") == "a_b_c"
    assert asset_key_part("") == "_"
