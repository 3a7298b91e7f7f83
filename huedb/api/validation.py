"""Client-side argument normalisation and validation, with chromadb's error classes.

These checks run in the caller's process before anything is sent to the engine or the
server, exactly where chromadb runs them, so the same bad call raises the same exception
class (mostly `ValueError` / `TypeError`) in every mode.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from huedb.api.embedding_arrays import check_array_rows, check_embedding_array
from huedb.api.json_shape import nests_deeper_than
from huedb.api.types import INCLUDE_ITEMS
from huedb.engine.filters import MAX_FILTER_DEPTH
from huedb.engine.record_values import UINT32_MAX
from huedb.errors import DuplicateIDError, InvalidArgumentError
from huedb.record_batch import INT64_MAX, INT64_MIN
from huedb.sparse_vector import (
    SPARSE_VECTOR_TYPE_VALUE,
    TYPE_KEY,
    SparseVector,
    trusted_sparse_vector,
)

SCALAR_TYPES = (str, int, float, bool)
COMPARISON_OPS = ("$gt", "$gte", "$lt", "$lte")
EQUALITY_OPS = ("$eq", "$ne")
LIST_OPS = ("$in", "$nin")
MEMBER_OPS = ("$contains", "$not_contains")
DOCUMENT_OPS = ("$contains", "$not_contains", "$regex", "$not_regex")
LOGICAL_OPS = ("$and", "$or")
WHERE_OPS = (*COMPARISON_OPS, "$ne", "$eq", *LIST_OPS, *MEMBER_OPS)
DOCUMENT_KEY = "#document"
# Record metadata keys chromadb's client refuses (`validate_metadata`). It lets `chroma:uri`
# and other `chroma:` keys through: the server makes a string `chroma:uri` the record's uri
# and never returns `chroma:` keys in metadata (`api/checks.py`, `api/local.py`).
RESERVED_METADATA_KEYS = ("chroma:document",)


def maybe_list(value: Any) -> list[Any] | None:
    """Wrap a single item into a list; keep lists and None as they are."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def normalize_ids(ids: Any, unique: bool = True) -> list[str]:
    """Check ids: a list of strings, non-empty and unique unless the caller checks those
    later (`unique=False`: a write's record set, checked in chromadb's order)."""
    if isinstance(ids, str):
        ids = [ids]
    if not isinstance(ids, list | tuple):
        raise ValueError(f"Expected IDs to be a list, got {type(ids).__name__} as IDs")
    if len(ids) == 0 and unique:
        raise ValueError("Expected IDs to be a non-empty list, got 0 IDs")
    for item in ids:
        if not isinstance(item, str):
            raise ValueError(f"Expected ID to be a str, got {item!r}")
    if unique:
        check_unique(ids)
    return list(ids)


def check_unique(ids: Sequence[str]) -> None:
    """Raise DuplicateIDError when an id appears twice."""
    if len(set(ids)) != len(ids):
        dups = sorted(i for i, n in Counter(ids).items() if n > 1)
        shown = ", ".join(dups[:10]) + (f", ...({len(dups)} total)" if len(dups) > 10 else "")
        raise DuplicateIDError(f"Expected IDs to be unique, found duplicates of: {shown}")


def normalize_embeddings(embeddings: Any) -> np.ndarray | RaggedRows | None:
    """Check embeddings as chromadb's `normalize_embeddings` and `validate_embeddings` do
    (same rules, same messages), as a contiguous float32 matrix (n x d), or `RaggedRows`
    when their lengths differ (refused later by `uniform_embeddings`)."""
    if embeddings is None:
        return None
    if len(embeddings) == 0:
        raise ValueError(
            f"Expected Embeddings to be non-empty list or numpy array, got {embeddings}"
        )
    if isinstance(embeddings, np.ndarray) and embeddings.ndim in (1, 2):
        matrix = embeddings.reshape(1, -1) if embeddings.ndim == 1 else embeddings
        check_embedding_array(matrix[0], 0)  # all rows share the first row's size and dtype
        return _float32_matrix(matrix)
    if isinstance(embeddings, list):
        first = embeddings[0]
        if _is_number(first):
            return _float32_matrix(_number_rows([embeddings]))
        if isinstance(first, np.ndarray):
            return _float32_matrix(_stacked(_array_rows(embeddings)))
        if isinstance(first, list) and _is_number(first[0]):
            return _float32_matrix(_number_rows(embeddings))
    raise ValueError(
        "Expected embeddings to be a list of floats or ints, a list of lists, a numpy array, "
        f"or a list of numpy arrays, got {embeddings}"
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number_rows(rows: list[Any]) -> np.ndarray:
    """Rows whose first value is a Python number, each converted to float32 as chromadb
    does (`np.array(row, dtype=np.float32)`, which also parses later strings and bools):
    in one numpy conversion when the rows are uniform, else row by row with its errors."""
    with contextlib.suppress(ValueError, TypeError), np.errstate(over="ignore"):
        matrix = np.asarray(rows, dtype=np.float32)
        if matrix.ndim == 2:
            return matrix
    converted = [np.array(row, dtype=np.float32) for row in rows]
    for index, row in enumerate(converted):
        check_embedding_array(row, index)
    return _stacked(converted)


def _array_rows(rows: list[Any]) -> list[np.ndarray]:
    """A list of numpy arrays, each checked as chromadb's `validate_embeddings` does."""
    check_array_rows(rows)
    return [row.reshape(-1) if row.ndim > 1 and row.shape[0] == 1 else row for row in rows]


class RaggedRows(list):  # type: ignore[type-arg]
    """Checked embedding rows of more than one length: refused by `uniform_embeddings`
    once the call's other checks have passed (chromadb's server finds them after its
    client's checks, so those errors come first)."""


def _stacked(rows: list[np.ndarray]) -> np.ndarray | RaggedRows:
    """Checked embedding arrays of one length as one matrix, else the rows as they are."""
    dim = len(rows[0])
    if any(len(row) != dim for row in rows):
        return RaggedRows(rows)
    return np.asarray(rows)


def uniform_embeddings(matrix: np.ndarray | RaggedRows | None) -> np.ndarray | None:
    """The embeddings `normalize_embeddings` gave, refused (chromadb's
    InvalidArgumentError) when their rows differ in length."""
    if isinstance(matrix, RaggedRows):
        raise InvalidArgumentError("Inconsistent dimensions in provided embeddings")
    return matrix


def _float32_matrix(matrix: np.ndarray | RaggedRows) -> np.ndarray | RaggedRows:
    if isinstance(matrix, RaggedRows):
        return matrix
    if matrix.ndim != 2:
        raise ValueError(f"Expected embeddings to be a 2-D array, got {matrix.ndim}-D")
    with np.errstate(over="ignore", invalid="ignore"):
        return np.ascontiguousarray(matrix, dtype=np.float32)


def validate_metadata(metadata: Any, allow_none_values: bool = False) -> None:
    """Check one record metadata dict (values: scalars, `SparseVector`s (or their wire
    dicts, tagged `#type`), or homogeneous non-empty lists)."""
    if not isinstance(metadata, dict):
        raise ValueError(f"Expected metadata to be a dict or None, got {metadata!r}")
    if len(metadata) == 0:
        raise ValueError(
            f"Expected metadata to be a non-empty dict, got {len(metadata)} metadata attributes"
        )
    for key, value in metadata.items():
        if key in RESERVED_METADATA_KEYS:
            raise ValueError(f"Expected metadata to not contain the reserved key {key}")
        if not isinstance(key, str):
            raise TypeError(f"Expected metadata key to be a str, got {key!r}")
        if value is None or isinstance(value, SparseVector) or _is_wire_sparse(value):
            continue
        if isinstance(value, list):
            _validate_list_value(key, value)
            continue
        if not isinstance(value, SCALAR_TYPES):
            raise ValueError(
                "Expected metadata value to be a str, int, float, bool, SparseVector, list, "
                f"or None, got {value!r} which is a {type(value).__name__}"
            )


def checked_metadata(metadata: Any) -> dict[str, Any]:
    """A record metadata dict, checked, with wire sparse vectors (dicts tagged `#type`)
    rebuilt as `SparseVector` (ValueError with its messages when malformed)."""
    validate_metadata(metadata)
    if not any(_is_wire_sparse(v) for v in metadata.values()):
        return metadata
    return {k: SparseVector.from_dict(v) if _is_wire_sparse(v) else v for k, v in metadata.items()}


def read_metadata(metadata: Any) -> Any:
    """A returned metadata dict with sparse vectors (dicts tagged `#type`) as `SparseVector`,
    as chromadb's client gives them to its callers."""
    if not isinstance(metadata, dict) or not any(_is_wire_sparse(v) for v in metadata.values()):
        return metadata
    return {k: _read_sparse(v) if _is_wire_sparse(v) else v for k, v in metadata.items()}


def read_metadatas(metadatas: Any) -> Any:
    """A get's (list) or a query's (list of lists) metadatas, through `read_metadata`."""
    if not isinstance(metadatas, list):
        return metadatas
    return [read_metadatas(m) if isinstance(m, list) else read_metadata(m) for m in metadatas]


def _is_wire_sparse(value: Any) -> bool:
    return isinstance(value, dict) and value.get(TYPE_KEY) == SPARSE_VECTOR_TYPE_VALUE


def _read_sparse(value: dict[str, Any]) -> SparseVector:
    """A sparse vector the server answered (checked when it was written, so not again)."""
    return trusted_sparse_vector(value["indices"], value["values"], value.get("tokens"))


def _validate_list_value(key: str, value: list[Any]) -> None:
    """A metadata list: non-empty, its items all of one of chromadb's exact types (ints and
    floats do not mix, numpy scalars are refused), with chromadb's messages."""
    if len(value) == 0:
        raise ValueError(f"Expected metadata list value for key '{key}' to be non-empty")
    first = _exact_type(value[0])
    if first not in SCALAR_TYPES or any(_exact_type(v) is not first for v in value):
        raise ValueError(
            f"Expected metadata list value for key '{key}' to contain only str, int, float, "
            f"or bool and all elements must be the same type, got {value}"
        )


def _exact_type(value: Any) -> type:
    return bool if isinstance(value, bool) else type(value)


def widen_number_lists(metadata: Any) -> Any:
    """A metadata dict read from JSON (an imported file) with each list of ints and floats
    made all floats (`widened_list`); anything else is returned as given, for the checks to
    judge."""
    if not isinstance(metadata, dict) or not any(isinstance(v, list) for v in metadata.values()):
        return metadata
    return {k: widened_list(v) if isinstance(v, list) else v for k, v in metadata.items()}


def widened_list(value: list[Any]) -> list[Any]:
    """A metadata list read from JSON as Chroma's server parses it: ints and floats together
    are a float list (`[1, 2.5]` -> `[1.0, 2.5]`), and so are ints one of which is beyond
    int64 (no int list holds it: `[2**63, 1]` -> `[9.223372036854776e18, 1.0]`); any other
    list as given (one beyond a double too: the metadata checks refuse it)."""
    kinds = {_exact_type(v) for v in value}
    beyond_int64 = kinds == {int} and any(not INT64_MIN <= v <= INT64_MAX for v in value)
    if kinds == {int, float} or beyond_int64:
        try:
            return [float(v) for v in value]
        except OverflowError:
            return value
    return value


def validate_collection_metadata(metadata: Any, allow_none: bool = False) -> None:
    """Check collection metadata: a non-empty dict of scalar values (or None, if allowed)."""
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise ValueError(f"Expected metadata to be a dict or None, got {metadata!r}")
    if len(metadata) == 0:
        raise ValueError(f"Expected metadata to be a non-empty dict, got {metadata}")
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise TypeError(f"Expected metadata key to be a str, got {key!r}")
        if value is None and allow_none:
            continue
        if value is None or isinstance(value, dict):
            raise TypeError(f"Expected collection metadata value to be a scalar, got {value!r}")
        if not isinstance(value, SCALAR_TYPES):
            raise ValueError(
                f"Expected collection metadata value to be a str, int, float or bool, got {value!r}"
            )


def validate_include(include: Any, allow_distances: bool) -> list[str]:
    """Check an include list, as chromadb's `validate_include` (a list, not a tuple)."""
    if not isinstance(include, list):
        raise ValueError(f"Expected include to be a list, got {include}")
    for item in include:
        if not isinstance(item, str):
            raise ValueError(f"Expected include item to be a str, got {item}")
        if item not in INCLUDE_ITEMS:
            raise ValueError(
                f"Expected include item to be one of {', '.join(INCLUDE_ITEMS)}, got {item}"
            )
        if item == "distances" and not allow_distances:
            raise ValueError(f"Include item cannot be one of distances, got {item}")
    return list(include)


def not_a_string(argument: str, value: Any) -> TypeError:
    """chromadb's in-process binding's TypeError for an argument that is not a string."""
    return TypeError(
        f"argument '{argument}': '{type(value).__name__}' object cannot be converted to 'PyString'"
    )


def validate_n_results(n_results: Any) -> int:
    """Check n_results: a positive int (chroma raises TypeError for <= 0)."""
    if not isinstance(n_results, int | np.integer):
        raise ValueError(f"Expected requested number of results to be a int, got {n_results}")
    if n_results <= 0:
        raise TypeError(f"Number of requested results {n_results}, cannot be negative, or zero.")
    return int(n_results)


def validate_limit_offset(value: Any, name: str) -> int | None:
    """Check limit / offset: None or an int that fits an unsigned 32-bit integer (the
    errors of chromadb's in-process binding)."""
    if value is None:
        return None
    if not isinstance(value, int | np.integer):
        raise TypeError(
            f"argument '{name}': '{type(value).__name__}' object cannot be interpreted as "
            "an integer"
        )
    if not 0 <= value <= UINT32_MAX:
        raise OverflowError("out of range integral type conversion attempted")
    return int(value)


def validate_delete_limit(limit: Any) -> None:
    """A delete's limit, as chromadb checks it: None or a non-negative int (not a bool)
    that fits an unsigned 32-bit integer (its binding's OverflowError past that)."""
    if limit is None:
        return
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise TypeError("limit must be a non-negative integer")
    if limit < 0:
        raise ValueError("limit must be a non-negative integer")
    if limit > UINT32_MAX:
        raise OverflowError("out of range integral type conversion attempted")


def validate_modify_metadata(metadata: Any) -> None:
    """The metadata of `Collection.modify`, checked client-side as chromadb does (its record
    metadata check: lists and None values pass here; the server checks what a collection's
    metadata may hold, after the new name)."""
    if not isinstance(metadata, dict):
        raise ValueError(
            f"Expected metadata to be a dict or None, got {type(metadata).__name__} as metadata"
        )
    if len(metadata) == 0:
        raise ValueError(
            f"Expected metadata to be a non-empty dict, got {len(metadata)} metadata attributes"
        )
    for key, value in metadata.items():
        if key == "chroma:document":
            raise ValueError(f"Expected metadata to not contain the reserved key {key}")
        if not isinstance(key, str):
            raise TypeError(
                f"Expected metadata key to be a str, got {key} which is a {type(key).__name__}"
            )
        if isinstance(value, SparseVector):
            continue
        if isinstance(value, list):
            if len(value) == 0:
                raise ValueError(f"Expected metadata list value for key '{key}' to be non-empty")
            first = bool if isinstance(value[0], bool) else type(value[0])
            for item in value:
                kind = bool if isinstance(item, bool) else type(item)
                if kind is not first or kind not in (str, int, float, bool):
                    raise ValueError(
                        f"Expected metadata list value for key '{key}' to contain only str, "
                        f"int, float, or bool and all elements must be the same type, got {value}"
                    )
            continue
        if not isinstance(value, (*SCALAR_TYPES, type(None))):
            raise ValueError(
                "Expected metadata value to be a str, int, float, bool, SparseVector, list, "
                f"or None, got {value} which is a {type(value).__name__}"
            )


def validate_where(where: Any) -> None:
    """Client-side structural check of a `where` filter, as chromadb's `validate_where`
    (same checks, order and ValueError messages). A `#document` key takes the metadata
    operators; of them only $contains / $not_contains filter documents (a str operand).
    A filter nested deeper than huedb compiles is refused first (its messages would show
    the whole value)."""
    _check_filter_depth(where, "where")
    if not isinstance(where, dict):
        raise ValueError(f"Expected where to be a dict, got {where}")
    if len(where) != 1:
        raise ValueError(f"Expected where to have exactly one operator, got {where}")
    key, value = next(iter(where.items()))
    if not isinstance(key, str):
        raise ValueError(f"Expected where key to be a str, got {key}")
    if key in MEMBER_OPS:
        raise ValueError(
            "Expected where key to be a metadata field name or a logical operator ($and, $or), "
            f"got {key}"
        )
    if key not in (*LOGICAL_OPS, *LIST_OPS) and not isinstance(value, str | int | float | dict):
        raise ValueError(
            f"Expected where value to be a str, int, float, or operator expression, got {value}"
        )
    if key in LOGICAL_OPS:
        if not isinstance(value, list):
            raise ValueError(
                f"Expected where value for $and or $or to be a list of where expressions, "
                f"got {value}"
            )
        if len(value) <= 1:
            raise ValueError(
                "Expected where value for $and or $or to be a list with at least two where "
                f"expressions, got {value}"
            )
        for sub in value:
            validate_where(sub)
    if not isinstance(value, dict):
        return
    if len(value) != 1:
        raise ValueError(f"Expected operator expression to have exactly one operator, got {value}")
    op, operand = next(iter(value.items()))
    if op in COMPARISON_OPS and not isinstance(operand, int | float):
        raise ValueError(
            f"Expected operand value to be an int or a float for operator {op}, got {operand}"
        )
    if op in LIST_OPS and not isinstance(operand, list):
        raise ValueError(f"Expected operand value to be an list for operator {op}, got {operand}")
    if op in MEMBER_OPS:
        if key == DOCUMENT_KEY and not isinstance(operand, str):
            raise ValueError(
                f"Expected operand value to be a str for operator {op} on #document, got {operand}"
            )
        if not isinstance(operand, SCALAR_TYPES):
            raise ValueError(
                "Expected operand value to be a str, int, float, or bool for operator "
                f"{op}, got {operand}"
            )
    if op not in WHERE_OPS:
        raise ValueError(f"Expected where operator to be one of {', '.join(WHERE_OPS)}, got {op}")
    if not isinstance(operand, (*SCALAR_TYPES, list)):
        raise ValueError(
            "Expected where operand value to be a str, int, float, bool, or list of those "
            f"type, got {operand}"
        )
    if isinstance(operand, list) and (
        len(operand) == 0 or not all(isinstance(x, type(operand[0])) for x in operand)
    ):
        raise ValueError(
            "Expected where operand value to be a non-empty list, and all values to be of the "
            f"same type got {operand}"
        )


def _check_filter_depth(value: Any, what: str) -> None:
    # Two levels of objects and arrays per level of $and / $or.
    if nests_deeper_than(value, 2 * MAX_FILTER_DEPTH + 2):
        raise ValueError(f"Invalid {what} clause: nested too deeply")


def validate_where_document(where_document: Any) -> None:
    """Client-side structural check of a `where_document` filter, as chromadb's (one
    nested too deeply refused first)."""
    _check_filter_depth(where_document, "where document")
    if not isinstance(where_document, dict):
        raise ValueError(f"Expected where document to be a dictionary, got {where_document}")
    if len(where_document) != 1:
        raise ValueError(
            f"Expected where document to have exactly one operator, got {where_document}"
        )
    op, operand = next(iter(where_document.items()))
    if op not in (*DOCUMENT_OPS, *LOGICAL_OPS):
        raise ValueError(
            f"Expected where document operator to be one of "
            f"{', '.join((*DOCUMENT_OPS, *LOGICAL_OPS))}, got {op}"
        )
    if op in LOGICAL_OPS:
        if not isinstance(operand, list):
            raise ValueError(
                "Expected document value for $and or $or to be a list of where document "
                f"expressions, got {operand}"
            )
        if len(operand) <= 1:
            raise ValueError(
                "Expected document value for $and or $or to be a list with at least two where "
                f"document expressions, got {operand}"
            )
        for sub in operand:
            validate_where_document(sub)
    elif not isinstance(operand, str):
        raise ValueError(
            f"Expected where document operand value for operator {op} to be a str, got {operand}"
        )
    elif len(operand) == 0:
        raise ValueError(
            f"Expected where document operand value for operator {op} to be a non-empty str"
        )


def check_lengths(**fields: Sequence[Any] | np.ndarray | None) -> None:
    """Chroma's record-set length check: some field given, none empty, all of one length."""
    given = {name: len(value) for name, value in fields.items() if value is not None}
    if not given:
        raise ValueError(f"At least one of one of {', '.join(fields)} must be provided")
    empty = [name for name, n in given.items() if n == 0]
    if empty:
        raise ValueError(f"Non-empty lists are required for {empty}")
    if len(set(given.values())) > 1:
        detail = ", ".join(f"{k}: {n}" for k, n in given.items())
        raise ValueError(f"Unequal lengths for fields: {detail}")


def check_documents(documents: list[Any] | None, nullable: bool) -> None:
    """Documents must be strings; None entries only when embeddings are given (`nullable`)."""
    for document in documents or ():
        if not (isinstance(document, str) or (document is None and nullable)):
            raise ValueError(f"Expected document to be a str, got {document}")


def check_images(images: list[Any] | None) -> None:
    """Images must be numpy arrays of at least two dimensions, as chromadb's `is_image`."""
    for image in images or ():
        if not isinstance(image, np.ndarray) or image.ndim < 2:
            raise ValueError(f"Expected image to be a numpy array, got {image}")


def finite_or_error(matrix: np.ndarray) -> None:
    """Reject NaN and infinite values (chroma: InvalidArgumentError)."""
    if not np.isfinite(matrix).all():
        raise InvalidArgumentError(
            "Validation error: embeddings: Embeddings must not contain NaN or Infinity values"
        )


def normalize_query_ids(ids: Any) -> list[str]:
    """Ids that restrict a query's candidates: strings; duplicates collapse."""
    if isinstance(ids, str):
        ids = [ids]
    if not isinstance(ids, list | tuple) or not all(isinstance(i, str) for i in ids):
        raise ValueError(f"Expected IDs to be a list of str, got {ids!r}")
    return list(ids)


@contextlib.contextmanager
def validation_context(op: str) -> Iterator[None]:
    """Append chroma's ` in <op>.` to messages of errors raised while preparing a call."""
    try:
        yield
    except (ValueError, TypeError, IndexError, AttributeError, DuplicateIDError) as exc:
        if exc.args and isinstance(exc.args[0], str):
            exc.args = (f"{exc.args[0]} in {op}.", *exc.args[1:])
        raise


def maybe_list_of_dicts(metadatas: Any) -> list[Any]:
    """One metadata dict or a list of them (None entries allowed)."""
    if isinstance(metadatas, dict):
        return [metadatas]
    if not isinstance(metadatas, list | tuple):
        raise ValueError(f"Expected metadatas to be a list, got {metadatas!r}")
    return list(metadatas)
