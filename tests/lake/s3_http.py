"""A minimal S3 client over plain HTTP with AWS Signature Version 4, path-style URLs.

Tests check the bucket with a client that is not DuckDB (so a DuckDB bug cannot hide itself), and
the test server creates its bucket and proves it writable through the S3 API itself; no AWS SDK
is installed here, and the three calls we need fit in a page.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass

_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class S3HTTPError(Exception):
    """An S3 answer other than 2xx: status and the server's error document."""

    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        self.status = status
        self.body = body
        super().__init__(f"{method} {url}: HTTP {status}: {body[:500]}")


@dataclass(frozen=True)
class S3HTTP:
    endpoint: str  # http://host:port
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def create_bucket(self, bucket: str) -> None:
        self.request("PUT", f"/{bucket}")

    def put_object(self, bucket: str, key: str, body: bytes) -> None:
        self.request("PUT", f"/{bucket}/{key}", body=body)

    def delete_object(self, bucket: str, key: str) -> None:
        self.request("DELETE", f"/{bucket}/{key}")

    def list_keys(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """key -> size of every object under ``prefix`` (ListObjectsV2, following pages)."""
        found: dict[str, int] = {}
        token: str | None = None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            root = ET.fromstring(self.request("GET", f"/{bucket}", query=query))
            for item in root.iter(f"{_S3_NS}Contents"):
                found[item.findtext(f"{_S3_NS}Key", "")] = int(item.findtext(f"{_S3_NS}Size", "0"))
            if root.findtext(f"{_S3_NS}IsTruncated") != "true":
                return found
            token = root.findtext(f"{_S3_NS}NextContinuationToken")

    def request(self, method: str, path: str, *, query: dict[str, str] | None = None,
                body: bytes = b"", timeout: float = 10) -> bytes:
        """One signed request; raises S3HTTPError for a non-2xx answer."""
        uri = urllib.parse.quote(path, safe="/~")
        canonical_query = "&".join(
            f"{urllib.parse.quote(k, safe='~')}={urllib.parse.quote(v, safe='~')}"
            for k, v in sorted((query or {}).items()))
        headers = self._signed_headers(method, uri, canonical_query, body)
        url = self.endpoint.rstrip("/") + uri + (f"?{canonical_query}" if canonical_query else "")
        req = urllib.request.Request(url, data=body if method in ("PUT", "POST") else None,
                                     method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            raise S3HTTPError(method, url, exc.code,
                              exc.read().decode("utf-8", "replace")) from None

    def _signed_headers(self, method: str, uri: str, canonical_query: str, body: bytes
                        ) -> dict[str, str]:
        """SigV4: the request in canonical form, hashed, signed with a key derived from the
        secret, the day, the region and the service."""
        now = _dt.datetime.now(_dt.UTC)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        host = urllib.parse.urlsplit(self.endpoint).netloc
        payload_hash = hashlib.sha256(body).hexdigest()
        headers = {"host": host, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
        signed = ";".join(sorted(headers))
        canonical = "\n".join([method, uri, canonical_query,
                               "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
                               signed, payload_hash])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        key = f"AWS4{self.secret_key}".encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
                                    f"SignedHeaders={signed}, Signature={signature}")
        del headers["host"]  # urllib sets it from the URL, identically
        return headers
