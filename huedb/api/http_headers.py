"""HTTP headers given in several dicts, merged as HTTP compares names: without case."""

from __future__ import annotations

from collections.abc import Mapping


def merged_headers(*layers: Mapping[str, str] | None) -> dict[str, str]:
    """The headers of `layers`, a later layer's header replacing an earlier one of the same
    name in any case (`authorization` given by the user and `Authorization` from a token
    provider were both sent: the server saw two tokens)."""
    merged: dict[str, str] = {}
    for layer in layers:
        for name, value in (layer or {}).items():
            for held in [key for key in merged if key.lower() == name.lower()]:
                del merged[held]
            merged[name] = value
    return merged
