"""Changes a graph has not taken yet, searched exactly beside it until a pass applies them.

A query that finds a large oplog backlog (another process updated a fifth of a collection,
say) would otherwise apply it to the HNSW graph inside the call: 200,000 changes at
1M x 384 kept the first query waiting 52.6 s. Instead, `VectorIndex.defer` notes them
here: the keys whose graph entries are out of date (`stale`, left out of the graph's
candidates) and the current float32 vectors of those still present (`fresh`, whose nearest
join the candidates, found exactly). A background pass then applies the noted changes to
a copy of the graph in a child process (`graph_build.apply_backlog`) and the result is
swapped in (`VectorIndex.adopt_backlog_graph`); changes noted meanwhile are kept apart
(`later`) for the next pass. The graph being searched is never changed meanwhile. Searches
stay exact-ranked and never see an outdated vector or a deleted record, at the cost of an
exact pass over `fresh` per query.

This module keeps the bookkeeping only; the graph operations are `VectorIndex`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

# A catch-up of at most this many changed keys is applied to the graph inside the call that
# finds it (at 1M x 384 about 0.5 s on two cores; ~0.15 s at 100k); a larger one is deferred.
INLINE_MAX_CHANGES = 2_048

Contains = Callable[[np.ndarray], np.ndarray]  # keys -> whether the graph holds each


class ExactVectors(Protocol):
    """What the backlog keeps its current vectors in (`vector_index.FlatVectors`)."""

    nbytes: int

    def __len__(self) -> int: ...

    def keys(self) -> np.ndarray: ...

    def rows(self, keys: np.ndarray) -> np.ndarray: ...

    def gather(self, keys: np.ndarray) -> np.ndarray: ...

    def upsert(self, keys: np.ndarray, vectors: np.ndarray) -> None: ...

    def contents(self) -> tuple[np.ndarray, np.ndarray]: ...

    def remove(self, keys: np.ndarray) -> None: ...

    def search(self, space: str, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class BacklogWork:
    """The changes one background pass applies: every key to take out of the graph
    (`keys`), and those of them to put back with their current vectors (`add_keys`,
    `add_vectors`, float32 as stored)."""

    keys: np.ndarray
    add_keys: np.ndarray
    add_vectors: np.ndarray


class Backlog:
    """The keys whose graph entries are out of date and the current vectors of those present."""

    def __init__(self, fresh: ExactVectors) -> None:
        self.stale: set[int] = set()
        self.fresh = fresh
        self.stale_in_graph = 0  # stale keys the graph still holds (its length counts them)
        self.later: set[int] | None = None  # keys noted since a pass took its work

    def __len__(self) -> int:
        return len(self.stale)

    @property
    def nbytes(self) -> int:
        """Bytes of the fresh vectors (the key set is small beside them)."""
        return self.fresh.nbytes

    def note(
        self,
        contains: Contains,
        removed: np.ndarray,
        keys: np.ndarray,
        vectors: np.ndarray,
        held: bool = False,
    ) -> None:
        """Record that `removed` are gone and `keys` now hold `vectors` (`held`: `fresh`
        already holds them)."""
        changed = np.concatenate([removed, keys]).astype(np.uint64)
        new = np.asarray([k for k in changed.tolist() if k not in self.stale], dtype=np.uint64)
        if len(new):
            self.stale_in_graph += int(np.count_nonzero(contains(new)))
            self.stale.update(new.tolist())
        if len(removed):
            self.fresh.remove(removed)
        if len(keys) and not held:
            self.fresh.upsert(keys, vectors)
        if self.later is not None:
            self.later.update(changed.tolist())

    def current(self, keys: np.ndarray) -> np.ndarray:
        """The graph's candidate keys whose entries are up to date, in the order given."""
        return keys[~self.is_stale(keys)] if self.stale else keys

    def is_stale(self, keys: np.ndarray) -> np.ndarray:
        """Per key, whether its graph entry is out of date."""
        stale = self.stale
        return np.fromiter((k in stale for k in keys.tolist()), bool, len(keys))

    def nearest(self, space: str, query: np.ndarray, count: int) -> np.ndarray:
        """The keys of the `count` fresh vectors nearest the query (exact)."""
        if len(self.fresh) == 0:
            return np.empty(0, dtype=np.uint64)
        return self.fresh.search(space, query, count)[0]

    def take_work(self) -> BacklogWork:
        """Every change noted so far (whatever an earlier pass that did not finish took),
        for one pass; changes noted from now on are `later`. The keys and vectors are lent
        by `fresh`, not copied (a change to them copies them first)."""
        keys = np.fromiter(self.stale, dtype=np.uint64, count=len(self.stale))
        add_keys, add_vectors = self.fresh.contents()
        self.later = set()
        return BacklogWork(keys, add_keys, add_vectors)

    def settle(self, work: BacklogWork, contains: Contains) -> None:
        """After a pass applied `work`, giving a graph whose membership `contains` tells:
        the work's keys not noted again since are current in it, so they leave the
        backlog; the keys left are counted in the new graph."""
        later = self.later or set()
        self.later = None
        done = np.asarray([k for k in work.keys.tolist() if k not in later], dtype=np.uint64)
        self.stale.difference_update(done.tolist())
        self.fresh.remove(done)
        left = np.fromiter(self.stale, dtype=np.uint64, count=len(self.stale))
        self.stale_in_graph = int(np.count_nonzero(contains(left))) if len(left) else 0
