"""Where the store's identity goes in a pay body: pos/data/store_fields.toml, as data.

One table per protocol family ([offline], [ams]). Reference §5.2 and §5.4 mark
the offline seller and terminal field names [A]; a merchant's onboarding pack
may name others, so the mapping is a data file and this module only reads and
applies it (the client writes, the sandbox reads).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["StoreFields", "store_fields", "put_store", "read_store"]


class StoreFields:
    def __init__(self, paths: Mapping[str, str], required: tuple[str, ...]) -> None:
        self.paths = {key: path for key, path in paths.items() if path}
        self.required = required


@cache
def store_fields(protocol: str) -> StoreFields:
    data = tomllib.loads(resources.files("pos.data").joinpath("store_fields.toml").read_text("utf-8"))
    pay = dict(data[protocol])
    required = tuple(str(k) for k in pay.pop("required", []))
    return StoreFields({str(k): str(v) for k, v in pay.items()}, required)


def put_store(body: dict[str, Any], store: Mapping[str, str], protocol: str) -> None:
    """Write each non-empty store value at its path in `body` (creating objects on the way)."""
    for key, path in store_fields(protocol).paths.items():
        value = store.get(key, "")
        if not value:
            continue
        *parents, leaf = path.split(".")
        node = body
        for name in parents:
            child = node.get(name)
            if not isinstance(child, dict):
                child = node[name] = {}
            node = child
        node[leaf] = value


def read_store(body: Mapping[str, Any], protocol: str) -> dict[str, str]:
    """The store values a pay body carries, by [store] key (absent ones left out)."""
    found: dict[str, str] = {}
    for key, path in store_fields(protocol).paths.items():
        node: Any = body
        for name in path.split("."):
            node = node.get(name) if isinstance(node, Mapping) else None
        if isinstance(node, str) and node:
            found[key] = node
    return found
