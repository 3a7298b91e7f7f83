"""Values of a collection's configuration and schema, checked as Chroma's serde does.

Shared by `collection_config` (the configuration) and `collection_schema` (the schema):
spaces, unsigned and float numbers, JSON objects, unknown fields and embedding-function
configurations, refused with Chroma's messages (without serde's " at line L column C").
"""

from __future__ import annotations

from typing import Any

from huedb.errors import InvalidArgumentError, serde_unexpected, shape_error

SPACE_NAMES = ("l2", "cosine", "ip")  # serde's order in Chroma's error messages


def parse_space(value: Any) -> str:
    """A distance space: `l2`, `cosine` or `ip`."""
    if isinstance(value, str):
        if value in SPACE_NAMES:
            return value
        raise shape_error(f"unknown variant `{value}`, expected one of `l2`, `cosine`, `ip`")
    raise shape_error(f"invalid type: {serde_unexpected(value)}, expected a string")


USIZE_MAX = 2**64 - 1


def parse_usize(value: Any) -> int:
    """A non-negative int up to 2**64 - 1 (Rust's usize). A larger one is, as serde_json
    reads it, a floating point number: refused with its message (it was stored, and every
    JSON answer showing it, `huedb stats` among them, then failed)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise shape_error(f"invalid value: integer `{value}`, expected usize")
        if value > USIZE_MAX:
            raise shape_error(f"invalid type: floating point `{float(value)!r}`, expected usize")
        return value
    raise shape_error(f"invalid type: {serde_unexpected(value)}, expected usize")


def parse_f64(value: Any) -> float:
    """A number, as a float."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise shape_error(f"invalid type: {serde_unexpected(value)}, expected f64")


def expect_object(value: Any, what: str) -> dict[str, Any]:
    """`value` if it is a JSON object; otherwise serde's error naming `what` was expected."""
    if not isinstance(value, dict):
        raise shape_error(f"invalid type: {serde_unexpected(value)}, expected {what}")
    return value


def unknown_field(key: str, fields: tuple[str, ...]) -> InvalidArgumentError:
    """serde's error for a field a struct does not have (its wording for one, two or more
    fields)."""
    named = [f"`{f}`" for f in fields]
    if not named:
        expected = "there are no fields"
    elif len(named) == 1:
        expected = f"expected {named[0]}"
    elif len(named) == 2:
        expected = f"expected {named[0]} or {named[1]}"
    else:
        expected = f"expected one of {', '.join(named)}"
    return shape_error(f"unknown field `{key}`, {expected}", (key,))


def parse_embedding_function(value: Any) -> dict[str, Any] | None:
    """An `EmbeddingFunctionConfiguration`: legacy, unknown, or known (name + config)."""
    if value is None:
        return None
    given = expect_object(value, "internally tagged enum EmbeddingFunctionConfiguration")
    kind = given.get("type")
    if kind in ("legacy", "unknown"):
        return {"type": kind}
    if kind == "known":
        if not isinstance(given.get("name"), str):
            raise shape_error("missing field `name`")
        if "config" not in given:
            raise shape_error("missing field `config`")
        return {"type": "known", "name": given["name"], "config": given["config"]}
    if kind is None:
        raise shape_error("missing field `type`")
    raise shape_error(
        f"unknown variant `{kind}`, expected one of `legacy`, `known`, `unknown`", ("type",)
    )


def ef_is_default(ef: dict[str, Any] | None) -> bool:
    """Chroma's `is_embedding_function_default`: none, unknown, or the known "default"."""
    if ef is None:
        return True
    if ef.get("type") == "legacy":
        return False
    if ef.get("type") == "unknown":
        return True
    return ef.get("name") == "default"
