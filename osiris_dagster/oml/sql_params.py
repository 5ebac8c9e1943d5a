"""`${params.x}` inside query text: a parameter is a value, never code.

A plain text substitution lets a value end a string literal and start a statement of its own
(`x' ; COPY ... TO 'file'; SELECT '`), and a sensor passes file names into params, so anyone who
can drop a file into a watched folder would write SQL. Here the query text is scanned once with
the quoting rules of its language, and each reference is rendered for the place it sits in:

- in code: a literal of the value (`'O''Brien'`, `42`, `2.5`, `TRUE`, `NULL`), so it can only
  ever be one value;
- inside a string literal or a quoted identifier: the value escaped for that quote, so the quote
  cannot be closed by it;
- inside a comment: left as written (a comment runs nothing, and a newline in a value would end
  a `--` comment).

A value that cannot be kept exactly where it sits (a list, a backslash inside MySQL text whose
meaning depends on the server's sql_mode, a dollar-quote tag) is an error naming the parameter.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

PARAM_REF = re.compile(r"\$\{params\.([^}]+)\}")
LANGUAGES = ("duckdb", "mysql", "graphql")


class SqlParamError(ValueError):
    """A parameter value that cannot be placed in query text as exactly one value."""


def render(text: str, values: Mapping[str, Any], language: str,
           on_missing: Callable[[str], None]) -> str:
    """`text` with every `${params.x}` rendered as a value of `language`.

    ``on_missing(name)`` is called for an undeclared parameter (its reference is kept).
    Raises SqlParamError for a value that cannot be kept exactly.
    """
    if "${params." not in text:
        return text
    scanner = _SCANNERS[language]
    out: list[str] = []
    for start, end, context in scanner(text):
        segment = text[start:end]
        if context == "comment" or "${params." not in segment:
            out.append(segment)
        else:
            out.append(_render_segment(segment, values, language, context, on_missing))
    return "".join(out)


def _render_segment(segment: str, values: Mapping[str, Any], language: str, context: str,
                    on_missing: Callable[[str], None]) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1).strip()
        if name not in values:
            on_missing(name)
            return m.group(0)
        try:
            return _RENDERERS[language](values[name], context)
        except SqlParamError as exc:
            raise SqlParamError(f"parameter '{name}': {exc}") from None

    return PARAM_REF.sub(repl, segment)


# -- rendering -------------------------------------------------------------------------------------

def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    raise SqlParamError(f"a {type(value).__name__} value ({value!r}) cannot be placed in a query "
                        "as one value; use a string, number, boolean or null")


def _code_literal(value: Any, quote_string: Callable[[str], str]) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return _scalar_text(value)
    if isinstance(value, str):
        return quote_string(value)
    _scalar_text(value)  # raises with the message
    return ""


def _sql_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _duckdb(value: Any, context: str) -> str:
    if context == "code":
        return _code_literal(value, _sql_quote)
    text = _scalar_text(value)
    if context == "string":
        return text.replace("'", "''")
    if context == "estring":  # E'...': backslash escapes too
        return text.replace("\\", "\\\\").replace("'", "''")
    if context == "ident":
        return text.replace('"', '""')
    if context.startswith("dollar:"):
        tag = context[len("dollar:"):]
        if tag in text:
            raise SqlParamError(f"the value contains {tag}, which would end the dollar-quoted "
                                "string it sits in; use a '...' string instead")
        return text
    raise AssertionError(context)


_MYSQL_BACKSLASH = ("contains a backslash, whose meaning inside MySQL text depends on the "
                    "server's sql_mode (NO_BACKSLASH_ESCAPES); pass a value without one")


def _mysql_quote(value: str) -> str:
    if "\\" in value:
        raise SqlParamError(_MYSQL_BACKSLASH)
    return "'" + value.replace("'", "''") + "'"


def _mysql(value: Any, context: str) -> str:
    if context == "code":
        return _code_literal(value, _mysql_quote)
    text = _scalar_text(value)
    if context in ("string", "dstring"):
        if "\\" in text:
            raise SqlParamError(_MYSQL_BACKSLASH)
        quote = "'" if context == "string" else '"'
        return text.replace(quote, quote * 2)
    if context == "backtick":
        return text.replace("`", "``")
    raise AssertionError(context)


def _graphql(value: Any, context: str) -> str:
    if context == "code":
        if value is None:
            return "null"
        if isinstance(value, bool | int | str) or (isinstance(value, float)
                                                   and math.isfinite(value)):
            return json.dumps(value, ensure_ascii=False)
        _scalar_text(value)
    text = _scalar_text(value)
    if context == "string":
        return json.dumps(text, ensure_ascii=False)[1:-1]
    if context == "block":
        return text.replace('"""', '\\"""')
    raise AssertionError(context)


_RENDERERS: dict[str, Callable[[Any, str], str]] = {
    "duckdb": _duckdb, "mysql": _mysql, "graphql": _graphql,
}


# -- scanning: (start, end, context) segments that cover the text ------------------------------

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def _scan_duckdb(text: str) -> list[tuple[int, int, str]]:
    """DuckDB / PostgreSQL: '...' ('' inside), E'...' (backslash escapes), "ident", $tag$...$tag$,
    -- line comments and nestable /* */ comments."""
    segs: list[tuple[int, int, str]] = []
    i, code_start, n = 0, 0, len(text)

    def flush(upto: int) -> None:
        if upto > code_start:
            segs.append((code_start, upto, "code"))

    while i < n:
        c = text[i]
        if c == "'" or (c in "eE" and text[i + 1:i + 2] == "'" and not _word_before(text, i)):
            escaped = c != "'"
            open_at = i + (2 if escaped else 1)
            flush(open_at)
            end = _string_end(text, open_at, "'", backslash=escaped)
            segs.append((open_at, end, "estring" if escaped else "string"))
            code_start, i = end, end + 1
        elif c == '"':
            flush(i + 1)
            end = _string_end(text, i + 1, '"', backslash=False)
            segs.append((i + 1, end, "ident"))
            code_start, i = end, end + 1
        elif c == "$" and (m := _DOLLAR_TAG.match(text, i)) and not _word_before(text, i):
            tag = m.group(0)
            flush(m.end())
            close = text.find(tag, m.end())
            end = n if close < 0 else close
            segs.append((m.end(), end, "dollar:" + tag))
            i = code_start = end + (len(tag) if close >= 0 else 0)
            if close >= 0:
                segs.append((end, i, "code"))
        elif text.startswith("--", i):
            flush(i)
            end = _line_end(text, i)
            segs.append((i, end, "comment"))
            i = code_start = end
        elif text.startswith("/*", i):
            flush(i)
            end = _block_comment_end(text, i, nested=True)
            segs.append((i, end, "comment"))
            i = code_start = end
        else:
            i += 1
    flush(n)
    return segs


def _scan_mysql(text: str) -> list[tuple[int, int, str]]:
    """MySQL: '...' and "..." strings (backslash escapes and doubled quotes), `ident`,
    -- / # line comments, /* */ comments; /*! ... */ runs as code, so it is scanned as code."""
    segs: list[tuple[int, int, str]] = []
    i, code_start, n = 0, 0, len(text)

    def flush(upto: int) -> None:
        if upto > code_start:
            segs.append((code_start, upto, "code"))

    while i < n:
        c = text[i]
        if c in "'\"":
            flush(i + 1)
            end = _string_end(text, i + 1, c, backslash=True)
            segs.append((i + 1, end, "string" if c == "'" else "dstring"))
            code_start, i = end, end + 1
        elif c == "`":
            flush(i + 1)
            end = _string_end(text, i + 1, "`", backslash=False)
            segs.append((i + 1, end, "backtick"))
            code_start, i = end, end + 1
        elif text.startswith("/*!", i) or text.startswith("*/", i):
            i += 3 if text.startswith("/*!", i) else 2  # executable comment: its body is code
        elif c == "#" or (text.startswith("--", i)):
            flush(i)
            end = _line_end(text, i)
            segs.append((i, end, "comment"))
            i = code_start = end
        elif text.startswith("/*", i):
            flush(i)
            end = _block_comment_end(text, i, nested=False)
            segs.append((i, end, "comment"))
            i = code_start = end
        else:
            i += 1
    flush(n)
    return segs


def _scan_graphql(text: str) -> list[tuple[int, int, str]]:
    """GraphQL: "..." strings (backslash escapes), \"\"\"...\"\"\" block strings, # comments."""
    segs: list[tuple[int, int, str]] = []
    i, code_start, n = 0, 0, len(text)

    def flush(upto: int) -> None:
        if upto > code_start:
            segs.append((code_start, upto, "code"))

    while i < n:
        if text.startswith('"""', i):
            flush(i + 3)
            j = i + 3
            while j < n and not text.startswith('"""', j):
                j += 4 if text.startswith('\\"""', j) else 1
            end = min(j, n)
            segs.append((i + 3, end, "block"))
            i = code_start = end
            if i < n:
                i += 3
        elif text[i] == '"':
            flush(i + 1)
            end = _string_end(text, i + 1, '"', backslash=True)
            segs.append((i + 1, end, "string"))
            code_start, i = end, end + 1
        elif text[i] == "#":
            flush(i)
            end = _line_end(text, i)
            segs.append((i, end, "comment"))
            i = code_start = end
        else:
            i += 1
    flush(n)
    return segs


def _word_before(text: str, i: int) -> bool:
    return i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_$")


def _string_end(text: str, start: int, quote: str, *, backslash: bool) -> int:
    """Index of the closing quote of a string whose body starts at ``start`` (len if open).

    The returned index is where the body ends; the closing quote itself is the next code.
    """
    i, n = start, len(text)
    while i < n:
        c = text[i]
        if backslash and c == "\\":
            i += 2
        elif c == quote:
            if text[i + 1:i + 2] == quote:
                i += 2
            else:
                return i
        else:
            i += 1
    return n


def _line_end(text: str, i: int) -> int:
    end = text.find("\n", i)
    return len(text) if end < 0 else end


def _block_comment_end(text: str, i: int, *, nested: bool) -> int:
    depth, j, n = 0, i, len(text)
    while j < n:
        if text.startswith("/*", j):
            depth = depth + 1 if nested or depth == 0 else depth
            j += 2
        elif text.startswith("*/", j):
            depth -= 1
            j += 2
            if depth == 0:
                return j
        else:
            j += 1
    return n


_SCANNERS: dict[str, Callable[[str], list[tuple[int, int, str]]]] = {
    "duckdb": _scan_duckdb, "mysql": _scan_mysql, "graphql": _scan_graphql,
}
