"""The DuckDB secret that lets a DuckLake data path on S3 be read and written, built from the
standard AWS environment variables, so a worker is configured like every other AWS client.

DuckDB's ``credential_chain`` provider needs the ``aws`` extension, which cannot be installed
offline; the ``config`` provider (built into httpfs) takes the values explicitly instead, so we
read the variables ourselves. A custom endpoint (SeaweedFS, MinIO, R2, ...) is given to DuckDB as
``host:port`` with ``USE_SSL`` from its scheme and path-style URLs: such servers do not resolve
``<bucket>.<host>`` names, which DuckDB's default virtual-host style would ask for.

The statement carries the secret key: run it, never log it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from osiris_dagster.core.errors import SessionStoreError
from osiris_dagster.core.naming import quote_literal

SECRET_NAME = "osiris_s3"
# first set (non-empty) variable wins, in the order the AWS SDKs and CLI use
KEY_ID_VARS = ("AWS_ACCESS_KEY_ID",)
SECRET_VARS = ("AWS_SECRET_ACCESS_KEY",)
TOKEN_VARS = ("AWS_SESSION_TOKEN",)
REGION_VARS = ("AWS_REGION", "AWS_DEFAULT_REGION")
ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


def s3_secret_sql(environ: Mapping[str, str] | None = None) -> str | None:
    """``CREATE OR REPLACE TEMPORARY SECRET`` for S3 from ``environ`` (default: the process
    environment), or None when no AWS variable is set (DuckDB's defaults then apply).

    Temporary: the secret lives in the connection's memory only and is never written to
    DuckDB's secret directory. An empty variable counts as unset, as in the AWS CLI.
    Raises SessionStoreError naming the variable when values cannot work (a key id without
    its secret or the reverse, an endpoint that is not ``http(s)://host[:port]``).
    """
    env = os.environ if environ is None else environ
    key_id = _first(env, KEY_ID_VARS)
    secret = _first(env, SECRET_VARS)
    token = _first(env, TOKEN_VARS)
    region = _first(env, REGION_VARS)
    endpoint = _first(env, ENDPOINT_VARS)
    if not any((key_id, secret, token, region, endpoint)):
        return None
    if (key_id is None) != (secret is None):
        given, missing = (KEY_ID_VARS[0], SECRET_VARS[0]) if key_id else (SECRET_VARS[0],
                                                                           KEY_ID_VARS[0])
        raise SessionStoreError(f"S3 credentials: {given} is set but {missing} is not; set both "
                          "(or neither, for a public bucket)")
    if token is not None and key_id is None:
        raise SessionStoreError(f"S3 credentials: {TOKEN_VARS[0]} is set without "
                          f"{KEY_ID_VARS[0]} and {SECRET_VARS[0]}; a session token belongs to "
                          "temporary credentials, set all three")
    options = ["TYPE s3", "PROVIDER config"]
    if key_id is not None and secret is not None:
        options += [f"KEY_ID {quote_literal(key_id[1])}", f"SECRET {quote_literal(secret[1])}"]
    if token is not None:
        options.append(f"SESSION_TOKEN {quote_literal(token[1])}")
    if region is not None:
        options.append(f"REGION {quote_literal(region[1])}")
    if endpoint is not None:
        host_port, use_ssl = parse_endpoint(*endpoint)
        options += [f"ENDPOINT {quote_literal(host_port)}",
                    f"USE_SSL {'true' if use_ssl else 'false'}", "URL_STYLE 'path'"]
    return f"CREATE OR REPLACE TEMPORARY SECRET {SECRET_NAME} ({', '.join(options)})"


def parse_endpoint(variable: str, url: str) -> tuple[str, bool]:
    """``http(s)://host[:port][/]`` -> (``host[:port]``, uses TLS), as DuckDB's ENDPOINT and
    USE_SSL want them; anything else is refused with a message naming ``variable``."""
    def bad(why: str) -> SessionStoreError:
        return SessionStoreError(f"{variable}={_without_userinfo(url)!r} is not a usable S3 "
                                 f"endpoint: {why}; expected http://host:port or "
                                 "https://host[:port] (e.g. http://127.0.0.1:8333)")

    try:
        parts = urlsplit(url.strip())
        port = parts.port  # ValueError when not a number in 0-65535
    except ValueError as exc:
        raise bad(str(exc)) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise bad("the scheme must be http or https" if parts.scheme else "no http(s):// scheme")
    if not parts.hostname:
        raise bad("no host")
    if parts.username is not None or parts.password is not None:
        raise bad("credentials belong in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, not the URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise bad("DuckDB takes no path, query or fragment in an S3 endpoint")
    host = parts.hostname
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    return (f"{host}:{port}" if port is not None else host), parts.scheme.lower() == "https"


def _without_userinfo(url: str) -> str:
    """The URL for a message: a ``user:password@`` part is replaced, never shown."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return url
    return f"{scheme}{sep}***@{authority.rsplit('@', 1)[1]}{slash}{path}"


def _first(env: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str] | None:
    """(variable, value) of the first of ``names`` set to a non-empty value."""
    for name in names:
        value = env.get(name)
        if value:
            return name, value
    return None
