"""Replace the string queries of a search's `Knn`s by embeddings (`Collection.search`).

`Knn(query="text")` is embedded client-side before the search is sent: `embed(key, text)`
returns the query for the Knn's key (the collection's dense embedding function for
`#embedding`, the schema's sparse function of that key otherwise; the caller decides and
raises chromadb's errors). Keys are compared by name, so `key=K("sparse")` selects the
sparse function (chromadb 1.5.9 compares a `Key` object with `==`, which builds a filter and
is always true, so it embeds with the dense function: a bug huedb does not copy).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from huedb.execution.expression.plan import Search
from huedb.execution.expression.rank import Knn, Rank
from huedb.execution.expression.where import key_name

Embed = Callable[[str, str], Any]


def embed_search(search: Search, embed: Embed) -> Search:
    """`search` with every string Knn query embedded (the same object when there is none)."""
    rank = search._rank
    if rank is None:
        return search
    embedded = embed_rank(rank, embed)
    return search if embedded is rank else search.rank(embedded)


def embed_rank(rank: Rank, embed: Embed) -> Rank:
    """`rank` with every string Knn query replaced by `embed(key, text)`."""
    if isinstance(rank, Knn):
        if not isinstance(rank.query, str):
            return rank
        return dataclasses.replace(rank, query=embed(key_name(rank.key), rank.query))
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(rank):
        value = getattr(rank, field.name)
        if isinstance(value, Rank):
            new = embed_rank(value, embed)
        elif field.name == "ranks":  # Sum, Mul, Max, Min, Rrf
            new = tuple(embed_rank(r, embed) for r in value)
            new = value if all(a is b for a, b in zip(new, value, strict=True)) else new
        else:
            continue
        if new is not value:
            changes[field.name] = new
    return dataclasses.replace(rank, **changes) if changes else rank
