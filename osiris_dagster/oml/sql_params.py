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
So is a reference whose place would let its value join what comes before it, whatever the value:
one in code with only white space or comments after a string literal (SQL joins ``'a'`` and a
literal after it into one string, and the literal continues an ``E'...'`` string with its
backslash escapes:
``E'x'${params.v}`` with ``\' OR true --`` was code), and one right after a backslash inside a
string that reads backslash escapes (the backslash escapes the value's first character).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

PARAM_REF = re.compile(r"\$\{params\.([^}]+)\}")


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
    joins = ""  # a string context a literal placed now would continue ("": none)
    after_string = False  # the code segment now starts with that string's closing quote
    for start, end, context in scanner(text):
        segment = text[start:end]
        if context == "comment":  # a comment joins too: 'a' /* c */ 'b' is 'ab'
            out.append(segment)
            continue
        if "${params." in segment:
            _refuse_joining_places(segment, language, context, joins, after_string)
            out.append(_render_segment(segment, values, language, context, on_missing))
        else:
            out.append(segment)
        if context == "code":
            rest = segment[1:] if after_string else segment
            joins = joins if not rest.strip() else ""
            after_string = False
        else:
            joins = context if context in _JOINED_STRINGS.get(language, ()) else ""
            after_string = True
    return "".join(out)


# string contexts a literal placed after them (white space between) would continue
_JOINED_STRINGS = {"duckdb": ("string", "estring"), "mysql": ("string", "dstring")}
# string contexts whose backslash escapes the next character
_BACKSLASH_STRINGS = {"duckdb": ("estring",), "mysql": ("string", "dstring")}


def _refuse_joining_places(segment: str, language: str, context: str, joins: str,
                           after_string: bool) -> None:
    """Raise SqlParamError for a reference placed where its value would join what comes before
    it (see the module's docstring), whatever the value. ``joins``: the string a literal placed
    at the segment's start would continue (only white space and comments between);
    ``after_string``: the segment starts with that string's closing quote."""
    skip = 1 if after_string else 0
    for m in PARAM_REF.finditer(segment):
        name = m.group(1).strip()
        if context == "code" and joins and not segment[skip:m.start()].strip():
            raise SqlParamError(
                f"parameter '{name}' follows a string literal with only white space or "
                "comments between: "
                "SQL joins the two into one string (and an E'...' string would read the "
                f"value's backslashes); put an operator between them, e.g. '...' || "
                f"${{params.{name}}}")
        if context in _BACKSLASH_STRINGS.get(language, ()):
            slashes = len(segment[:m.start()]) - len(segment[:m.start()].rstrip("\\"))
            if slashes % 2:
                raise SqlParamError(
                    f"parameter '{name}' follows a backslash inside a string that reads "
                    "backslash escapes, so the backslash would escape the value's first "
                    "character; remove the backslash, or double it for a backslash")


def _render_segment(segment: str, values: Mapping[str, Any], language: str, context: str,
                    on_missing: Callable[[str], None]) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1).strip()
        if name not in values:
            on_missing(name)
            return m.group(0)
        try:
            text = _RENDERERS[language](values[name], context)
        except SqlParamError as exc:
            raise SqlParamError(f"parameter '{name}': {exc}") from None
        value = values[name]
        if context == "code" and language != "graphql" and \
                isinstance(value, int | float) and not isinstance(value, bool):
            text = _one_token(text, segment[:m.start()][-1:], segment[m.end():][:1])
        return text

    return PARAM_REF.sub(repl, segment)


def _one_token(number: str, before: str, after: str) -> str:
    """A number in code that stays one value: in parentheses when negative (`amount-${p.x}`
    with -5 would be `amount--5`, the start of a comment, and `-5::TEXT` casts 5), apart from a
    word, number or dot it would join (`x${p.n}` with 5 is not the column `x5`)."""
    if number.startswith("-"):
        number = f"({number})"
    joins = re.compile(r"[\w.$]")
    return ((" " if joins.match(before) else "") + number +
            (" " if joins.match(after) else ""))


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

# a tag is an identifier: ASCII letters and _, any non-ASCII character, digits after the first
_DOLLAR_TAG = re.compile(r"\$((?:[A-Za-z_]|[^\x00-\x7f])(?:[A-Za-z0-9_]|[^\x00-\x7f])*)?\$")
Segment = tuple[int, int, str]


class _Segments:
    """Cuts a text into code and quoted/comment regions, in order, covering every character."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.segs: list[Segment] = []
        self.code_start = 0

    def region(self, start: int, end: int, context: str, resume: int) -> int:
        """Code up to ``start``, then ``text[start:end]`` in ``context``; returns where scanning
        resumes (past a closing quote, which belongs to the code after it)."""
        if start > self.code_start:
            self.segs.append((self.code_start, start, "code"))
        self.segs.append((start, end, context))
        self.code_start = end
        return resume

    def quoted(self, body: int, quote: str, context: str, *, backslash: bool) -> int:
        end = _string_end(self.text, body, quote, backslash=backslash)
        return self.region(body, end, context, end + 1)

    def line_comment(self, i: int) -> int:
        end = _line_end(self.text, i)
        return self.region(i, end, "comment", end)

    def block_comment(self, i: int, *, nested: bool) -> int:
        end = _block_comment_end(self.text, i, nested=nested)
        return self.region(i, end, "comment", end)

    def done(self) -> list[Segment]:
        if len(self.text) > self.code_start:
            self.segs.append((self.code_start, len(self.text), "code"))
        return self.segs


def _scan_duckdb(text: str) -> list[Segment]:
    """DuckDB / PostgreSQL: '...' ('' inside), E'...' (backslash escapes), "ident", $tag$...$tag$,
    -- line comments and nestable /* */ comments."""
    out, i, n = _Segments(text), 0, len(text)
    while i < n:
        c = text[i]
        if c == "'":
            i = out.quoted(i + 1, "'", "string", backslash=False)
        elif c in "eE" and text[i + 1:i + 2] == "'" and not _word_before(text, i):
            i = out.quoted(i + 2, "'", "estring", backslash=True)
        elif c == '"':
            i = out.quoted(i + 1, '"', "ident", backslash=False)
        elif c == "$" and (m := _DOLLAR_TAG.match(text, i)) and not _word_before(text, i):
            tag = m.group(0)
            close = text.find(tag, m.end())
            end = n if close < 0 else close
            i = out.region(m.end(), end, "dollar:" + tag, min(n, end + len(tag)))
        elif text.startswith("--", i):
            i = out.line_comment(i)
        elif text.startswith("/*", i):
            i = out.block_comment(i, nested=True)
        else:
            i += 1
    return out.done()


def _scan_mysql(text: str) -> list[Segment]:
    """MySQL: '...' and "..." strings (backslash escapes and doubled quotes), `ident`,
    -- / # line comments, /* */ comments; /*! ... */ and MariaDB's /*M! ... */ run as code, so
    they are scanned as code."""
    out, i, n = _Segments(text), 0, len(text)
    while i < n:
        c = text[i]
        if c in "'\"":
            i = out.quoted(i + 1, c, "string" if c == "'" else "dstring", backslash=True)
        elif c == "`":
            i = out.quoted(i + 1, "`", "backtick", backslash=False)
        elif text.startswith(("/*!", "/*M!"), i) or text.startswith("*/", i):
            # an executable comment (MariaDB's /*M! too): its body runs, so it is code
            i += 3 if text.startswith("/*!", i) else 4 if text.startswith("/*M!", i) else 2
        elif c == "#" or text.startswith("--", i):
            i = out.line_comment(i)
        elif text.startswith("/*", i):
            i = out.block_comment(i, nested=False)
        else:
            i += 1
    return out.done()


def _scan_graphql(text: str) -> list[Segment]:
    """GraphQL: "..." strings (backslash escapes), \"\"\"...\"\"\" block strings, # comments."""
    out, i, n = _Segments(text), 0, len(text)
    while i < n:
        if text.startswith('"""', i):
            j = i + 3
            while j < n and not text.startswith('"""', j):
                j += 4 if text.startswith('\\"""', j) else 1
            i = out.region(i + 3, min(j, n), "block", min(n, j + 3))
        elif text[i] == '"':
            i = out.quoted(i + 1, '"', "string", backslash=True)
        elif text[i] == "#":
            i = out.line_comment(i)
        else:
            i += 1
    return out.done()


def _word_before(text: str, i: int) -> bool:
    """Whether ``text[i]`` continues an identifier (any non-ASCII character is one's)."""
    if i == 0:
        return False
    c = text[i - 1]
    return not c.isascii() or c.isalnum() or c in "_$"


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


_SCANNERS: dict[str, Callable[[str], list[Segment]]] = {
    "duckdb": _scan_duckdb, "mysql": _scan_mysql, "graphql": _scan_graphql,
}
