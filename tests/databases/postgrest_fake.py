"""A small, faithful stand-in for PostgREST (Supabase's REST layer) over a real PostgreSQL.

PostgREST cannot be installed here, so tests run the REST channel against this server: a
``ThreadingHTTPServer`` on 127.0.0.1 that turns requests into SQL on the test database, the way
PostgREST does (rows come back through ``json_agg``, inserts go through
``json_populate_recordset``), so types, conflicts and errors behave like the real thing.

Implemented:

* ``GET /rest/v1/`` -- OpenAPI-style ``definitions``; a column's ``format`` is PostgREST's
  ``data_type``: ``format_type()`` without the type modifier for built-in types (``numeric``,
  not ``numeric(10,2)``; a domain over one gives that type), with it for other types;
  ``openapi=False`` makes it answer 404, as a locked-down project does.
* ``GET /rest/v1/<table>``: ``select`` (``*``, ``a,b``, ``col::type``), filters
  ``eq neq gt gte lt lte like ilike is in`` and ``not.<op>``, ``order``
  (``col[.asc|.desc][.nullsfirst|.nullslast]``), ``limit``/``offset`` (or a ``Range`` header),
  ``Content-Range: <first>-<last>/*`` (``*/*`` when empty; ``/<n>`` with ``Prefer: count=exact``),
  ``max_rows`` like PostgREST's db-max-rows.
* ``POST``: a JSON object or array (columns = keys of the first object); ``Prefer:
  resolution=merge-duplicates`` / ``ignore-duplicates`` with ``on_conflict`` (default: the
  primary key); ``Prefer: return=minimal`` (201, empty) or ``return=representation``.
* ``DELETE`` with filters (one is required, like Supabase's safeupdate); 204.
* ``Accept-Profile`` / ``Content-Profile`` select the schema.
* Auth: ``apikey`` must equal the key and ``Authorization`` must be ``Bearer <key>``, else 401.
* Fault injection: :meth:`PostgrestFake.fail_next` queues responses (e.g. 429 with
  ``Retry-After``, 500) returned before the real handling; :meth:`PostgrestFake.fail_after_commit`
  handles (and commits) the request and then answers with an error, as a server or proxy that
  fails after the database committed; :meth:`PostgrestFake.answer_late` handles and commits the
  request and answers only after the client hung up (its read timeout). Every request is logged
  in ``requests`` (method, path, query, headers).
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg
from psycopg import sql

RESERVED = {"select", "order", "limit", "offset", "on_conflict", "columns"}
OPS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "like": "LIKE",
       "ilike": "ILIKE"}
_CAST = re.compile(r"^[a-z_][a-z0-9_ ]*(\[\])?$")


@dataclass
class Logged:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Fault:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    method: str | None = None  # only for this HTTP method
    after_commit: bool = False  # handle (and commit) the request, then answer with this fault
    late: bool = False  # handle and commit, then answer only once the client has hung up
    skip: int = 0  # let this many matching requests through untouched first


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"code": code, "message": message, "details": details, "hint": hint}


def _split_list(text: str) -> list[str]:
    """``a,"b,c",d`` -> ``['a', 'b,c', 'd']`` (PostgREST's in.(...) list syntax)."""
    out, cur, quoted, escaped, had_quotes = [], [], False, False, False
    for ch in text:
        if escaped:
            cur.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
            had_quotes = True
        elif ch == "," and not quoted:
            out.append("".join(cur) if had_quotes else "".join(cur).strip())
            cur, had_quotes = [], False
        else:
            cur.append(ch)
    if cur or had_quotes or out:
        out.append("".join(cur) if had_quotes else "".join(cur).strip())
    return out


class PostgrestFake:
    def __init__(self, dsn: str, key: str, *, openapi: bool = True,
                 max_rows: int | None = None) -> None:
        self.dsn = dsn
        self.key = key
        self.openapi = openapi
        self.undescribed: set[str] = set()  # columns the API description leaves out, as
        # PostgREST does with computed fields (selectable, not described)
        self.max_rows = max_rows
        self.faults: deque[Fault] = deque()
        self.requests: list[Logged] = []
        self.post_delay = 0.0  # seconds each POST takes before it is carried out (a slow API)
        self.shuffle_unordered = False  # rows of a GET without `order` in another order each
        self.queries = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> PostgrestFake:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True,
                                        name="postgrest-fake")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> PostgrestFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fail_next(self, status: int, count: int = 1, *, method: str | None = None,
                  retry_after: str | None = None, body: dict[str, Any] | None = None) -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        for _ in range(count):
            self.faults.append(Fault(status, headers, body or {"message": f"injected {status}"},
                                     method))

    def fail_after_commit(self, status: int = 500, *, method: str | None = "POST",
                          skip: int = 0) -> None:
        """The next matching request (after ``skip`` others) is carried out (rows committed),
        then answered with ``status``: the client cannot tell that its request took effect."""
        self.faults.append(Fault(status, {}, {"message": f"injected {status} after commit"},
                                 method, after_commit=True, skip=skip))

    def answer_late(self, *, method: str | None = "POST", skip: int = 0) -> None:
        """The next matching request (after ``skip`` others) is carried out (rows committed),
        but answered only once the client has closed the connection (its read timeout)."""
        self.faults.append(Fault(201, method=method, late=True, skip=skip))

    def calls(self, method: str) -> list[Logged]:
        return [r for r in self.requests if r.method == method]

    # -- SQL helpers ---------------------------------------------------------------------------
    def connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.dsn, autocommit=False)
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("SET bytea_output = 'hex'")
        return conn

    @staticmethod
    def columns(cur: psycopg.Cursor, schema: str, table: str) -> dict[str, str]:
        cur.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
            "AND c.relkind IN ('r', 'p', 'v') ORDER BY a.attnum", (schema, table))
        return {str(n): str(t) for n, t in cur.fetchall()}

    @staticmethod
    def openapi_formats(cur: psycopg.Cursor, schema: str, table: str) -> dict[str, str]:
        """Each column's ``format`` as PostgREST's OpenAPI output gives it (its schema cache's
        ``data_type``: built-in types, and domains over them, without their modifier)."""
        cur.execute(
            "SELECT a.attname, CASE WHEN t.typtype = 'd' THEN CASE WHEN bn.nspname = "
            "'pg_catalog' THEN format_type(t.typbasetype, NULL) ELSE format_type(a.atttypid, "
            "a.atttypmod) END WHEN tn.nspname = 'pg_catalog' THEN format_type(a.atttypid, NULL) "
            "ELSE format_type(a.atttypid, a.atttypmod) END FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_type t ON t.oid = a.atttypid JOIN pg_namespace tn ON tn.oid = t.typnamespace "
            "LEFT JOIN pg_type b ON t.typtype = 'd' AND b.oid = t.typbasetype "
            "LEFT JOIN pg_namespace bn ON bn.oid = b.typnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
            "AND c.relkind IN ('r', 'p', 'v') ORDER BY a.attnum", (schema, table))
        return {str(n): str(t) for n, t in cur.fetchall()}

    @staticmethod
    def primary_key(cur: psycopg.Cursor, schema: str, table: str) -> list[str]:
        cur.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indisprimary AND n.nspname = %s AND c.relname = %s", (schema, table))
        return [str(r[0]) for r in cur.fetchall()]


class _Handler(BaseHTTPRequestHandler):
    server_fake: PostgrestFake
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    # -- plumbing --------------------------------------------------------------------------
    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        fault, self._after = getattr(self, "_after", None), None
        if fault is not None and fault.late:
            self._wait_for_hang_up()
            with contextlib.suppress(OSError):
                self._send(status, body, headers)
            self.close_connection = True
            return
        if fault is not None:
            status, body, headers = fault.status, fault.body, fault.headers
        data = b"" if body is None else (body if isinstance(body, bytes)
                                         else json.dumps(body).encode())
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _wait_for_hang_up(self, limit: float = 60.0) -> None:
        """Block until the client closes the connection (EOF), i.e. it gave up waiting."""
        sock = self.connection
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            ready, _, _ = select.select([sock], [], [], 0.05)
            if ready:
                try:
                    if sock.recv(1, socket.MSG_PEEK) == b"":
                        return
                except OSError:
                    return

    def _handle(self, method: str) -> None:
        fake = self.server_fake
        self._after: Fault | None = None
        parts = urlsplit(self.path)
        query = parse_qsl(parts.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fake.requests.append(Logged(method, parts.path, query, dict(self.headers.items()), body))
        key = fake.key
        if self.headers.get("apikey") != key or \
                self.headers.get("Authorization") != f"Bearer {key}":
            self._send(401, {"code": "PGRST301", "message": "Invalid API key",
                             "hint": "Double check your Supabase `anon` or `service_role` API "
                                     "key."})
            return
        for i, fault in enumerate(fake.faults):
            if fault.method in (None, method):
                if fault.skip:
                    fault.skip -= 1
                    break
                del fake.faults[i]
                if fault.after_commit or fault.late:
                    self._after = fault  # applied by _send once the request was carried out
                    break
                self._send(fault.status, fault.body, fault.headers)
                return
        if method == "POST" and fake.post_delay:
            threading.Event().wait(fake.post_delay)
        try:
            path = unquote(parts.path)
            if path.rstrip("/") == "/rest/v1":
                if method != "GET" or not fake.openapi:
                    raise ApiError(404, "PGRST000", "Not found")
                self._openapi()
                return
            if not path.startswith("/rest/v1/"):
                raise ApiError(404, "PGRST000", "Not found")
            table = path[len("/rest/v1/"):]
            profile = self.headers.get("Accept-Profile" if method == "GET" else
                                       "Content-Profile") or "public"
            {"GET": self._get, "POST": self._post, "DELETE": self._delete}[method](
                profile, table, query, body)
        except ApiError as exc:
            self._send(exc.status, exc.body)
        except psycopg.Error as exc:
            state = exc.sqlstate or ""
            status = {"23505": 409, "23503": 409, "42501": 403, "42P01": 404}.get(
                state, 400 if state[:2] in ("22", "23", "42") else 500)
            diag = exc.diag
            self._send(status, {"code": state, "message": diag.message_primary or str(exc),
                                "details": diag.message_detail, "hint": diag.message_hint})

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    # -- endpoints ---------------------------------------------------------------------------
    def _openapi(self) -> None:
        fake = self.server_fake
        schema = self.headers.get("Accept-Profile") or "public"
        with fake.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON "
                        "n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN "
                        "('r', 'p', 'v') ORDER BY 1", (schema,))
            tables = [r[0] for r in cur.fetchall()]
            definitions = {}
            for t in tables:
                cols = fake.openapi_formats(cur, schema, t)
                key = fake.primary_key(cur, schema, t)
                definitions[t] = {"type": "object", "properties": {
                    c: {"format": fmt, "type": _json_type(fmt),
                        **({"description": "Note:\nThis is a Primary Key.<pk/>"}
                           if c in key else {})}
                    for c, fmt in cols.items() if c not in fake.undescribed}}
        self._send(200, {"swagger": "2.0", "definitions": definitions})

    def _table(self, cur: psycopg.Cursor, schema: str, table: str) -> dict[str, str]:
        cols = self.server_fake.columns(cur, schema, table)
        if not cols:
            raise ApiError(404, "PGRST205",
                           f"Could not find the table '{schema}.{table}' in the schema cache")
        return cols

    def _where(self, query: list[tuple[str, str]], cols: dict[str, str]
               ) -> tuple[list[sql.Composable], list[Any]]:
        clauses: list[sql.Composable] = []
        args: list[Any] = []
        for name, raw in query:
            if name in RESERVED:
                continue
            if name not in cols:
                raise ApiError(400, "42703", f"column {name} does not exist")
            negate = raw.startswith("not.")
            expr = raw[4:] if negate else raw
            op, _, value = expr.partition(".")
            col = sql.Identifier(name)
            typ = sql.SQL(cols[name])
            if op == "is":
                word = {"null": "NULL", "true": "TRUE", "false": "FALSE"}.get(value.lower())
                if word is None:
                    raise ApiError(400, "PGRST100", f"failed to parse filter ({raw})")
                clause = sql.SQL("{} IS {}").format(col, sql.SQL(word))
            elif op == "in":
                if not (value.startswith("(") and value.endswith(")")):
                    raise ApiError(400, "PGRST100", f"failed to parse filter ({raw})")
                clause = sql.SQL("{} = ANY(CAST(%s AS {}[]))").format(col, typ)
                args.append(_split_list(value[1:-1]))
            elif op in OPS:
                clause = sql.SQL("{} {} CAST(%s AS {})").format(
                    col, sql.SQL(OPS[op]), sql.SQL("text") if "like" in op else typ)
                args.append(value.replace("*", "%") if "like" in op else value)
            else:
                raise ApiError(400, "PGRST100", f"failed to parse filter ({raw})")
            clauses.append(sql.SQL("NOT ({})").format(clause) if negate else clause)
        return clauses, args

    def _get(self, schema: str, table: str, query: list[tuple[str, str]], body: bytes) -> None:
        fake = self.server_fake
        params = dict(query)
        with fake.connect() as conn, conn.cursor() as cur:
            cols = self._table(cur, schema, table)
            select = params.get("select", "*").strip() or "*"
            items: list[sql.Composable] = []
            if select == "*":
                items = [sql.Identifier(c) for c in cols]
            else:
                for part in select.split(","):
                    name, _, cast = part.strip().partition("::")
                    if name not in cols:
                        raise ApiError(400, "42703",
                                       f"column {table}.{name} does not exist")
                    if cast:
                        if not _CAST.match(cast):
                            raise ApiError(400, "PGRST100", f"bad cast {cast}")
                        items.append(sql.SQL("CAST({} AS {}) AS {}").format(
                            sql.Identifier(name), sql.SQL(cast), sql.Identifier(name)))
                    else:
                        items.append(sql.Identifier(name))
            clauses, args = self._where(query, cols)
            stmt = sql.SQL("SELECT {} FROM {}.{}").format(
                sql.SQL(", ").join(items), sql.Identifier(schema), sql.Identifier(table))
            if clauses:
                stmt += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses)
            if "order" in params:
                stmt += sql.SQL(" ORDER BY ") + sql.SQL(", ").join(
                    _order_item(o, cols) for o in params["order"].split(","))
            elif fake.shuffle_unordered:  # as PostgreSQL may: another order for each query
                fake.queries += 1
                stmt += sql.SQL(" ORDER BY md5(ROW({})::text || {})").format(
                    sql.SQL(", ").join(sql.Identifier(c) for c in cols),
                    sql.Literal(str(fake.queries)))
            offset = int(params.get("offset", 0))
            limit = int(params["limit"]) if "limit" in params else None
            rng = self.headers.get("Range")
            if rng and re.fullmatch(r"\d+-\d*", rng):
                first, _, last = rng.partition("-")
                offset = int(first)
                if last:
                    limit = int(last) - offset + 1
            if fake.max_rows is not None:
                limit = min(limit, fake.max_rows) if limit is not None else fake.max_rows
            count_stmt = sql.SQL("SELECT count(*) FROM ({}) AS q").format(stmt)
            if limit is not None:
                stmt += sql.SQL(" LIMIT {}").format(sql.Literal(limit))
            if offset:
                stmt += sql.SQL(" OFFSET {}").format(sql.Literal(offset))
            cur.execute(sql.SQL("SELECT coalesce(json_agg(t), '[]'::json)::text, count(*) "
                                "FROM ({}) AS t").format(stmt), args)
            text, n = cur.fetchone()
            total = "*"
            if "count=exact" in (self.headers.get("Prefer") or ""):
                cur.execute(count_stmt, args)
                total = str(cur.fetchone()[0])
        rng_out = f"{offset}-{offset + n - 1}/{total}" if n else f"*/{total}"
        self._send(200, text.encode(), {"Content-Range": rng_out})

    def _post(self, schema: str, table: str, query: list[tuple[str, str]], body: bytes) -> None:
        fake = self.server_fake
        params = dict(query)
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            raise ApiError(400, "PGRST102", "Empty or invalid json") from None
        raw = (body or b"null").decode("utf-8")  # passed on as sent: PostgreSQL parses the
        if isinstance(payload, dict):  # numbers, never Python's floats (PostgREST does so too)
            payload, raw = [payload], f"[{raw}]"
        if not isinstance(payload, list) or not all(isinstance(r, dict) for r in payload):
            raise ApiError(400, "PGRST102", "All object keys must match")
        prefer = self.headers.get("Prefer") or ""
        with fake.connect() as conn, conn.cursor() as cur:
            cols = self._table(cur, schema, table)
            if not payload:
                self._send(201)
                return
            names = list(payload[0])
            unknown = [n for n in names if n not in cols]
            if unknown:
                raise ApiError(400, "PGRST204", f"Could not find the '{unknown[0]}' column of "
                                                f"'{table}' in the schema cache")
            ident = sql.SQL(", ").join(sql.Identifier(n) for n in names)
            target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
            stmt = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM json_populate_recordset("
                           "NULL::{}, %s::json)").format(target, ident, ident, target)
            if "resolution=" in prefer:
                keys = [k for k in params.get("on_conflict", "").split(",") if k] or \
                    fake.primary_key(cur, schema, table)
                conflict = sql.SQL(", ").join(sql.Identifier(k) for k in keys)
                others = [n for n in names if n not in keys]
                if "resolution=ignore-duplicates" in prefer or not others:
                    stmt += sql.SQL(" ON CONFLICT ({}) DO NOTHING").format(conflict)
                else:
                    stmt += sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(
                        conflict, sql.SQL(", ").join(
                            sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(n),
                                                               sql.Identifier(n))
                            for n in others))
            cur.execute(stmt, [raw])
            conn.commit()
        self._send(201)

    def _delete(self, schema: str, table: str, query: list[tuple[str, str]], body: bytes
                ) -> None:
        fake = self.server_fake
        with fake.connect() as conn, conn.cursor() as cur:
            cols = self._table(cur, schema, table)
            clauses, args = self._where(query, cols)
            if not clauses:
                raise ApiError(400, "21000", "DELETE requires a WHERE clause")
            cur.execute(sql.SQL("DELETE FROM {}.{} WHERE {}").format(
                sql.Identifier(schema), sql.Identifier(table), sql.SQL(" AND ").join(clauses)),
                args)
            conn.commit()
        self._send(204)


def _order_item(item: str, cols: dict[str, str]) -> sql.Composable:
    parts = item.strip().split(".")
    name = parts[0]
    if name not in cols:
        raise ApiError(400, "42703", f"column {name} does not exist")
    out: sql.Composable = sql.Identifier(name)
    for p in parts[1:]:
        word = {"asc": "ASC", "desc": "DESC", "nullsfirst": "NULLS FIRST",
                "nullslast": "NULLS LAST"}.get(p)
        if word is None:
            raise ApiError(400, "PGRST100", f"failed to parse order ({item})")
        out = sql.SQL("{} {}").format(out, sql.SQL(word))
    return out


def _json_type(fmt: str) -> str:
    if fmt.endswith("[]"):
        return "array"
    if fmt in ("integer", "bigint", "smallint"):
        return "integer"
    if fmt.startswith(("numeric", "real", "double")):
        return "number"
    if fmt == "boolean":
        return "boolean"
    return "string"
