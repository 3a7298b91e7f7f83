"""The check of a ``chroma_bm25`` configuration: Chroma's JSON schema for it, without jsonschema.

The schema: an object whose only keys are ``k``, ``b``, ``avg_doc_length``,
``token_max_length`` (numbers), ``stopwords`` (a list of strings) and ``include_tokens`` (a
bool). Of several faults, the one reported is the one jsonschema's ``best_match`` picks (the
shallowest, then the greatest path); messages are jsonschema's, prefixed as chromadb does.
"""

from __future__ import annotations

import numbers
from typing import Any

__all__ = ["check_config"]

_NUMBER_KEYS = ("k", "b", "avg_doc_length", "token_max_length")
_KNOWN_KEYS = frozenset((*_NUMBER_KEYS, "stopwords", "include_tokens"))

Path = tuple[str | int, ...]


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def _not_of_type(value: Any, type_name: str) -> str:
    return f"{value!r} is not of type '{type_name}'"


def _faults(config: Any) -> list[tuple[Path, str]]:
    """Every fault of ``config``, as (path, message)."""
    if not isinstance(config, dict):
        return [((), _not_of_type(config, "object"))]
    faults: list[tuple[Path, str]] = []
    for key in _NUMBER_KEYS:
        if key in config and not _is_number(config[key]):
            faults.append(((key,), _not_of_type(config[key], "number")))
    stopwords = config.get("stopwords")
    if "stopwords" in config and not isinstance(stopwords, list):
        faults.append((("stopwords",), _not_of_type(stopwords, "array")))
    elif isinstance(stopwords, list):
        for position, word in enumerate(stopwords):
            if not isinstance(word, str):
                faults.append((("stopwords", position), _not_of_type(word, "string")))
    if "include_tokens" in config and not isinstance(config["include_tokens"], bool):
        faults.append((("include_tokens",), _not_of_type(config["include_tokens"], "boolean")))
    extras = sorted((key for key in config if key not in _KNOWN_KEYS), key=str)
    if extras:
        listed = ", ".join(repr(key) for key in extras)
        verb = "was" if len(extras) == 1 else "were"
        faults.append(((), f"Additional properties are not allowed ({listed} {verb} unexpected)"))
    return faults


def check_config(config: Any, schema_name: str) -> None:
    """Raise ``ValueError`` naming the most relevant fault of ``config``, if any."""
    faults = _faults(config)
    if not faults:
        return
    path, message = max(faults, key=lambda fault: (-len(fault[0]), fault[0]))
    text = f"Config validation failed for schema '{schema_name}': {message}"
    if path:
        text += f" at path '{'/'.join(str(part) for part in path)}'"
    raise ValueError(text)
