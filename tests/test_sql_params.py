"""`${params.x}` in query text becomes exactly one value wherever it sits, checked by running the
rendered SQL on real DuckDB and MariaDB and reading the value back."""

from __future__ import annotations

import json

import duckdb
import pymysql
import pytest

from osiris_dagster.oml.sql_params import SqlParamError, render

NASTY = [
    "O'Brien",
    "x' AS who, 1 AS n; COPY (SELECT 1) TO 'pwned.csv'; SELECT '1",
    "'; DROP TABLE t; --",
    'double " quote',
    "line\nbreak -- not a comment",
    "*/ SELECT 2 /*",
    "$$ dollar $a$",
    "ünïcødé ✓ 漢字",
    "",
    "trailing backslash \\",
    "\\' backslash quote",
]

DUCKDB_TEMPLATES = {
    "code": "SELECT ${params.v} AS v",
    "string": "SELECT 'pre ' || '${params.v}' AS v",
    "estring": "SELECT E'${params.v}' AS v",
    "identifier": 'SELECT v AS "${params.v}" FROM (SELECT 1 AS v)',
}


def _missing(name: str) -> None:
    raise AssertionError(f"unexpected missing {name}")


def _cases(templates: dict[str, str], values: list[str]) -> list[tuple[str, str]]:
    """Every template with every value; a name can never be empty or (MySQL) end in a space,
    whatever the quoting, so those pairs are left out."""
    return [(where, v) for where in templates for v in values
            if not (where in ("identifier", "backtick") and (v == "" or v.endswith(" ")))]


@pytest.mark.parametrize("where,value", _cases(DUCKDB_TEMPLATES, NASTY))
def test_duckdb_value_is_kept_exactly_wherever_it_sits(where: str, value: str) -> None:
    sql = render(DUCKDB_TEMPLATES[where], {"v": value}, "duckdb", _missing)
    assert len(duckdb.extract_statements(sql)) == 1
    cur = duckdb.connect().execute(sql)
    if where == "identifier":
        assert cur.description[0][0] == value
    else:
        got = cur.fetchone()[0]
        assert got == ("pre " + value if where == "string" else value)


@pytest.mark.parametrize("value", [v for v in NASTY if "$$" not in v])
def test_duckdb_dollar_quoted_value(value: str) -> None:
    sql = render("SELECT $$${params.v}$$ AS v", {"v": value}, "duckdb", _missing)
    assert duckdb.connect().execute(sql).fetchone()[0] == value


def test_a_value_holding_the_dollar_tag_is_refused() -> None:
    with pytest.raises(SqlParamError, match="parameter 'v'.*dollar"):
        render("SELECT $$${params.v}$$", {"v": "a$$b"}, "duckdb", _missing)


@pytest.mark.parametrize("value,literal", [(3, "3"), (-2.5, "(-2.5)"), (True, "TRUE"),
                                           (None, "NULL"), (10**20, str(10**20))])
def test_typed_values_in_code_are_literals(value: object, literal: str) -> None:
    assert render("SELECT ${params.v}", {"v": value}, "duckdb", _missing) == f"SELECT {literal}"


@pytest.mark.parametrize("template, value, expected", [
    # `amount--5`: the rest of the line was a comment, and its columns were gone (exit 0)
    ("SELECT 100-${params.v} AS n, 'kept' AS r\nFROM (SELECT 1)", -5, (105, "kept")),
    ("SELECT ${params.v}::VARCHAR AS n, 'kept' AS r", -5, ("-5", "kept")),  # not -(5::VARCHAR)
    ("SELECT 2^${params.v} AS n, 'kept' AS r", -1, (0.5, "kept")),
    ("SELECT 1${params.v} AS n, 'kept' AS r", 5, None),  # not the number 15: an error
    ("SELECT x${params.v} AS n, 'kept' AS r FROM (SELECT 1 AS x, 2 AS x5)", 5, None),
])
def test_a_number_in_code_stays_one_value(template: str, value: object,
                                          expected: tuple[object, ...] | None) -> None:
    sql = render(template, {"v": value}, "duckdb", _missing)
    if expected is None:
        with pytest.raises(duckdb.Error):
            duckdb.connect().execute(sql)
    else:
        assert duckdb.connect().execute(sql).fetchone() == expected


@pytest.mark.parametrize("tag", ["$ß$", "$é1$", "$_€$"])
def test_dollar_quotes_with_non_ascii_tags_are_strings(tag: str) -> None:
    """DuckDB takes any non-ASCII character in a dollar-quote tag; the scanner took the `'`
    inside such a string as the start of one, so the parameter after it was placed as code
    (`name OR TRUE` selected every row)."""
    sql = render(f"SELECT {tag}it's{tag} AS r, name FROM (SELECT 'ann' AS name) "
                 "WHERE name = ${params.v}", {"v": "name OR TRUE"}, "duckdb", _missing)
    assert duckdb.connect().execute(sql).fetchall() == []


@pytest.mark.parametrize("value", [[1, 2], {"a": 1}, float("nan")])
def test_values_that_are_not_one_scalar_are_refused(value: object) -> None:
    with pytest.raises(SqlParamError, match="parameter 'v'"):
        render("SELECT ${params.v}", {"v": value}, "duckdb", _missing)


def test_comments_keep_the_reference_and_quotes_in_comments_do_not_confuse() -> None:
    sql = ("SELECT 1 -- it's ${params.v}\n, /* don't ${params.v} */ ${params.v} AS v, "
           "'${params.v}' AS w")
    out = render(sql, {"v": "a'b"}, "duckdb", _missing)
    assert out == ("SELECT 1 -- it's ${params.v}\n, /* don't ${params.v} */ 'a''b' AS v, "
                   "'a''b' AS w")


def test_unknown_parameters_are_reported() -> None:
    seen: list[str] = []
    render("SELECT ${params.nope}, '${params.v}'", {"v": 1}, "duckdb", seen.append)
    assert seen == ["nope"]


MYSQL_TEMPLATES = {
    "code": "SELECT ${params.v} AS v",
    "string": "SELECT CONCAT('pre ', '${params.v}') AS v",
    "double-quoted string": 'SELECT CONCAT("pre ", "${params.v}") AS v',
    "backtick": "SELECT v AS `${params.v}` FROM (SELECT 1 AS v) t",
}


@pytest.fixture(scope="module")
def mariadb() -> pymysql.connections.Connection:
    try:
        con = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="",
                              charset="utf8mb4")
    except pymysql.err.OperationalError as exc:  # fail loudly, never skip
        pytest.fail(f"MariaDB on 127.0.0.1:3306 is not reachable ({exc}); start it with "
                    "`start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd`")
    yield con
    con.close()


@pytest.mark.parametrize("where,value", _cases(MYSQL_TEMPLATES,
                                                [v for v in NASTY if "\\" not in v]))
def test_mysql_value_is_kept_exactly_wherever_it_sits(mariadb, where: str, value: str) -> None:
    sql = render(MYSQL_TEMPLATES[where], {"v": value}, "mysql", _missing)
    with mariadb.cursor() as cur:
        cur.execute(sql.replace("%", "%%"))
        if where == "backtick":
            assert cur.description[0][0] == value
        else:
            assert cur.fetchone()[0] == (value if where == "code" else "pre " + value)


def test_mysql_refuses_a_backslash_whose_meaning_depends_on_sql_mode() -> None:
    with pytest.raises(SqlParamError, match="backslash.*NO_BACKSLASH_ESCAPES"):
        render("SELECT '${params.v}'", {"v": "a\\b"}, "mysql", _missing)


def test_mysql_executable_comment_is_code_and_hash_comment_is_not() -> None:
    out = render("SELECT /*! ${params.v} */ # ${params.v}\n", {"v": "x'y"}, "mysql", _missing)
    assert out == "SELECT /*! 'x''y' */ # ${params.v}\n"


def test_mariadbs_own_executable_comment_is_code(mariadb: pymysql.connections.Connection
                                                 ) -> None:
    """`/*M! ... */` runs on MariaDB: its `${params.x}` was left as written and the query failed
    with a syntax error (validate said nothing)."""
    sql = render("SELECT 'a' AS v FROM DUAL WHERE 1 = 1 /*M! AND 'bob' <> ${params.v} */",
                 {"v": "x'y"}, "mysql", _missing)
    assert sql.endswith("/*M! AND 'bob' <> 'x''y' */")
    with mariadb.cursor() as cur:
        cur.execute(sql)
        assert cur.fetchall() == (("a",),)


@pytest.mark.parametrize("value", NASTY + [7, True, None])
def test_graphql_values_are_graphql_literals(value: object) -> None:
    out = render('query { a(x: ${params.v}, y: "s ${params.v}") }', {"v": value}, "graphql",
                 _missing)
    code = out.split("x: ", 1)[1].split(", y: ", 1)[0]
    assert json.loads(code) == value
    string = out.split('y: "', 1)[1].rsplit('") }', 1)[0]
    text = "" if value is None else (str(value).lower() if isinstance(value, bool) else
                                     str(value))
    assert json.loads(f'"{string}"') == "s " + text


@pytest.mark.parametrize("value", ['a """ b', "plain", 'ends with "'])
def test_graphql_block_string_cannot_be_closed_by_a_value(value: str) -> None:
    out = render('query { a(doc: """${params.v}""") } # ${params.v}', {"v": value}, "graphql",
                 _missing)
    body = out.split('doc: """', 1)[1].rsplit('""") }', 1)[0]
    assert body.replace('\\"""', '"""') == value
    assert out.endswith("# ${params.v}")


@pytest.mark.parametrize("sql,expected", [
    ("SELECT '${params.v}", "SELECT 'x'' ; DROP TABLE t; --"),  # still inside the string
    ('SELECT "${params.v}', "SELECT \"x' ; DROP TABLE t; --"),
    ("SELECT /* ${params.v}", "SELECT /* ${params.v}"),
    ("SELECT $$ ${params.v}", "SELECT $$ x' ; DROP TABLE t; --"),
])
def test_an_unterminated_quote_or_comment_keeps_its_context(sql: str, expected: str) -> None:
    assert render(sql, {"v": "x' ; DROP TABLE t; --"}, "duckdb", _missing) == expected


@pytest.mark.parametrize("template", [
    "SELECT * FROM t WHERE owner = E'prefix-'${params.v}",
    "SELECT E'path:\\t'\n       ${params.v} AS label",
    "SELECT 'a' ${params.v}",
    "SELECT 'a'\n${params.v}",
    "SELECT E'prefix:'\n-- then the value\n${params.v} AS v",  # a comment joins too
    "SELECT 'a' /* c */ ${params.v}",
])
def test_a_reference_joined_to_the_string_before_it_is_refused(template: str) -> None:
    """SQL joins a string literal and one after it (white space between) into one string, and
    the second continues an E'...' string with its escapes: a review's `E'prefix-'${params.v}`
    with `\\' OR true --` returned every row, and `C:\\new` became a newline."""
    with pytest.raises(SqlParamError,
                       match="follows a string literal with only white space or comments"):
        render(template, {"v": "\\' OR true --"}, "duckdb", _missing)
    with pytest.raises(SqlParamError, match="follows a string literal"):  # also without a value
        render(template, {}, "duckdb", lambda name: None)


@pytest.mark.parametrize("template,language", [
    ("SELECT E'\\${params.v}' AS v", "duckdb"),
    ("SELECT E'a\\\\\\${params.v}' AS v", "duckdb"),
    ("SELECT '\\${params.v}' AS v", "mysql"),
    ('SELECT "x\\${params.v}" AS v', "mysql"),
])
def test_a_reference_after_an_escaping_backslash_is_refused(template: str, language: str
                                                            ) -> None:
    with pytest.raises(SqlParamError, match="follows a backslash"):
        render(template, {"v": "' OR true --"}, language, _missing)


@pytest.mark.parametrize("template,expected", [
    ("SELECT 'a' || ${params.v} AS v", "a\\' OR true --"),
    ("SELECT E'a\\\\${params.v}' AS v", "a\\\\' OR true --"),  # an escaped backslash, then it
    ("SELECT concat('a', ${params.v}) AS v", "a\\' OR true --"),
])
def test_references_apart_from_the_string_before_them_keep_the_value(template: str,
                                                                     expected: str) -> None:
    sql = render(template, {"v": "\\' OR true --"}, "duckdb", _missing)
    assert duckdb.connect().execute(sql).fetchone()[0] == expected


def test_mysql_refuses_a_reference_joined_to_a_string_across_a_comment() -> None:
    """MariaDB joins 'a' /* c */ 'b' into 'ab'."""
    with pytest.raises(SqlParamError, match="follows a string literal"):
        render("SELECT 'x' /* c */ ${params.v}", {"v": "y"}, "mysql", _missing)


def test_a_comment_after_code_does_not_make_a_join() -> None:
    sql = render("SELECT 'a' AS x, /* c */ ${params.v} AS v", {"v": "b"}, "duckdb", _missing)
    assert duckdb.connect().execute(sql).fetchall() == [("a", "b")]
