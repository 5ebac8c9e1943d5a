"""What a GraphQL document does: a query (a read, safe to send again) or a mutation (never sent
twice once it may have reached the server)."""

from __future__ import annotations

import re

_GQL_NOISE = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"|#[^\n]*')
_GQL_TOKEN = re.compile(r"[{}]|[_A-Za-z][_0-9A-Za-z]*")


def is_mutation(document: str) -> bool:
    """Whether the GraphQL document defines a mutation (at the top level, outside strings and
    comments). A query is a read and may be repeated; a mutation that reached the server and
    then failed may have been applied, so it is never sent twice."""
    depth = 0
    for token in _GQL_TOKEN.findall(_GQL_NOISE.sub(" ", document)):
        if token == "{":
            depth += 1
        elif token == "}":
            depth = max(0, depth - 1)
        elif depth == 0 and token == "mutation":
            return True
    return False
