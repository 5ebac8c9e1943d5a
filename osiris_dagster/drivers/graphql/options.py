"""The options of a ``graphql.extractor`` step (:class:`Options`), from the step's config and its
optional ``@graphql`` connection, and the request headers they give.

* **Endpoint and credentials.** ``endpoint`` from the step, else from the ``@graphql.<alias>``
  connection named by the step (``connection`` is optional for this family). The token comes
  from the connection's ``auth_token`` (and ``auth_username`` for basic auth), or from the step's
  ``auth_token`` / ``auth_username`` / ``headers`` written as ``${ENV_VAR}`` references, which
  are substituted here from the environment (plus ``.env`` of the working directory) at run time;
  a literal secret cannot be in a pipeline (validation rejects it). Connection ``headers`` are
  sent first, the step's ``headers`` override them. ``auth_type`` / ``auth_header_name`` may also
  come from the connection when the step leaves them at their defaults. Osiris ignores the
  connection and its compiler strips the step's token, so authenticated GraphQL never worked
  there.
* **Auth.** ``bearer`` -> ``Authorization: Bearer <token>``; ``basic`` -> HTTP basic with
  ``auth_username`` and the token as password; ``api_key`` -> ``<auth_header_name>: <token>``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from osiris_dagster.core.environment import environment, substitute_env
from osiris_dagster.core.errors import DriverError
from osiris_dagster.core.masking import is_secret_header
from osiris_dagster.drivers.http import client as hc

USER_AGENT = "osiris-dagster GraphQL extractor"
_AUTH_TYPES = ("none", "bearer", "basic", "api_key")


@dataclass(frozen=True)
class Options:
    endpoint: str
    query: str
    variables: dict[str, Any]
    headers: dict[str, str]
    auth_type: str
    auth_header_name: str
    token: str | None
    username: str | None
    timeout: float
    max_retries: int
    retry_delay: float
    pagination_enabled: bool
    pagination_path: str
    cursor_field: str
    has_next_field: str
    variable_name: str
    max_pages: int
    data_path: str
    flatten: bool
    validate_ssl: bool
    token_source: str  # what to check when the server rejects the credentials
    secret_headers: tuple[str, ...] = ()  # header values that are credentials

    @classmethod
    def from_config(cls, config: Mapping[str, Any], connection: Mapping[str, Any] | None
                    ) -> Options:
        conn = dict(connection or {})
        env = environment()
        endpoint = _endpoint(config, conn)
        query = str(config.get("query") or "")
        if not query.strip():
            raise DriverError("graphql.extractor: `query` is empty; give the GraphQL query")
        variables = config.get("variables") or {}
        if not isinstance(variables, Mapping):
            raise DriverError("graphql.extractor: `variables` must be a mapping of name -> value")
        auth_type = _step_unless_default("auth_type", "none", config, conn)
        if auth_type not in _AUTH_TYPES:
            raise DriverError(f"graphql.extractor: unknown auth_type {auth_type!r} (use one of "
                              f"{', '.join(_AUTH_TYPES)})")
        header_name = _step_unless_default("auth_header_name", "X-API-Key", config, conn)
        token = _credential("auth_token", config, conn, env)
        if conn.get("auth_token") not in (None, ""):
            source = "`auth_token` of the @graphql connection"
        else:
            source = "the environment variable in the step's `auth_token`"
        username = _credential("auth_username", config, conn, env)
        _check_credentials(auth_type, token, username)
        headers, secret_headers = _extra_headers(config, conn, env)
        return cls(
            endpoint=endpoint, query=query, variables=dict(variables), headers=headers,
            auth_type=auth_type, auth_header_name=header_name, token=token, username=username,
            timeout=float(config.get("timeout") or 30),
            max_retries=int(config.get("max_retries") if config.get("max_retries") is not None
                            else 3),
            retry_delay=float(config.get("retry_delay") or 1.0),
            pagination_enabled=bool(config.get("pagination_enabled", False)),
            pagination_path=str(config.get("pagination_path") or "data.pageInfo"),
            cursor_field=str(config.get("pagination_cursor_field") or "endCursor"),
            has_next_field=str(config.get("pagination_has_next_field") or "hasNextPage"),
            variable_name=str(config.get("pagination_variable_name") or "after"),
            max_pages=int(config.get("max_pages") or 0),
            data_path=str(config.get("data_path") or "data"),
            flatten=bool(config.get("flatten_result", True)),
            validate_ssl=bool(config.get("validate_ssl", True)),
            token_source=source, secret_headers=tuple(secret_headers),
        )

    def request_headers(self) -> tuple[dict[str, str], list[str]]:
        """Headers to send and the credentials among them (registered with the session's
        masker; error texts additionally blank out every custom header value)."""
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "User-Agent": USER_AGENT}
        secrets: list[str] = []
        if self.auth_type == "bearer":
            headers["Authorization"] = f"Bearer {self.token}"
        elif self.auth_type == "basic":
            pair = base64.b64encode(f"{self.username}:{self.token}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {pair}"
            secrets += [pair, str(self.username)]
        elif self.auth_type == "api_key":
            headers[self.auth_header_name] = str(self.token)
        if self.token:
            secrets.append(self.token)
        headers.update(self.headers)
        secrets += list(self.secret_headers)
        return headers, secrets


def _endpoint(config: Mapping[str, Any], conn: Mapping[str, Any]) -> str:
    """The step's ``endpoint``, else the connection's; an http(s) URL."""
    endpoint = str(config.get("endpoint") or conn.get("endpoint") or "").strip()
    if not endpoint:
        raise DriverError("graphql.extractor: no `endpoint`: set it in the step or in the "
                          "@graphql connection")
    if urlsplit(endpoint).scheme not in ("http", "https"):
        raise DriverError(f"graphql.extractor: `endpoint` must be an http(s) URL, got "
                          f"{hc.display_url(endpoint)!r}")
    return endpoint


def _step_unless_default(option: str, default: str, config: Mapping[str, Any],
                         conn: Mapping[str, Any]) -> str:
    """The step's ``option``; the connection's when the step leaves it at its default."""
    value = str(config.get(option) or default)
    if value == default and conn.get(option):
        value = str(conn[option])
    return value


def _credential(option: str, config: Mapping[str, Any], conn: Mapping[str, Any],
                env: Mapping[str, str]) -> str | None:
    """``auth_token`` / ``auth_username``: the connection's value, else the step's ``${ENV_VAR}``
    reference resolved, else None."""
    if conn.get(option) not in (None, ""):
        return str(conn[option])
    raw = config.get(option)
    return _env(str(raw), option, env) if raw not in (None, "") else None


def _check_credentials(auth_type: str, token: str | None, username: str | None) -> None:
    if auth_type in ("bearer", "api_key", "basic") and not token:
        raise DriverError(f"graphql.extractor: auth_type '{auth_type}' needs a token: set "
                          "`auth_token` in the @graphql connection, or `auth_token: "
                          "${ENV_VAR}` in the step")
    if auth_type == "basic" and not username:
        raise DriverError("graphql.extractor: auth_type 'basic' needs `auth_username` (in "
                          "the @graphql connection or as ${ENV_VAR} in the step)")


def _extra_headers(config: Mapping[str, Any], conn: Mapping[str, Any], env: Mapping[str, str]
                   ) -> tuple[dict[str, str], list[str]]:
    """The connection's ``headers``, then the step's (``${ENV_VAR}`` resolved) over them; and the
    values among them that are credentials."""
    headers: dict[str, str] = {}
    secret_headers: list[str] = []
    for origin, raw_headers in (("connection", conn.get("headers")),
                                ("step", config.get("headers"))):
        if raw_headers in (None, ""):
            continue
        if not isinstance(raw_headers, Mapping):
            raise DriverError(f"graphql.extractor: `headers` of the {origin} must be a "
                              "mapping of header name -> value")
        for name, raw_value in raw_headers.items():
            if raw_value is None:
                continue
            value = str(raw_value)
            if origin == "step":
                value = _env(value, f"headers.{name}", env)
            headers[str(name)] = value
            # a credential: from the connection, from ${ENV}, or under a secret-ish name
            if origin == "connection" or "${" in str(raw_value) or \
                    is_secret_header(str(name)):
                secret_headers.append(value)
    return headers, secret_headers


def _env(value: str, option: str, env: Mapping[str, str]) -> str:
    """A step option's ``${VAR}`` references resolved (the one substituter, driver errors)."""
    return substitute_env(value, env, option, "of the graphql.extractor step", DriverError)
