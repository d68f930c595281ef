"""The CloudEvents `source` of every producer in the mesh, from one naming rule.

`/contract-mesh/<service>`: the service's name (its command name, lower case with hyphens)
under the mesh's prefix, so a subscriber outside the mesh can tell our events from any other
system's. A service computes its source once, `SOURCE = source_of(SERVICE)`.
"""

from __future__ import annotations

import re

PREFIX = "/contract-mesh/"
_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def source_of(service: str) -> str:
    if not _NAME.match(service):
        raise ValueError(f"service name {service!r} must be lower case words joined by hyphens")
    return PREFIX + service
