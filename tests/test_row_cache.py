"""The PostgreSQL store's kept record rows (postgres_store/row_cache.py), against a simple
reference: a collection's full history.

Hypothesis draws a history of committed transactions on one collection (inserts, deletes,
vector-only updates, document updates, and changes whose new head the node cannot count),
each moving the oplog head, some of them by another node, which this node never hears of; and
the reports the node makes in any order: reads at some head (the true rows then), and its
own commits (head before and after, inserted and removed keys). After every step, every
lookup the cache answers must equal the true rows at the head asked for; answers may be
missing, never wrong. The byte bound holds after every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import example, given, settings
from hypothesis import strategies as st

from huedb.engine.postgres_store.row_cache import RowCache, WrittenRows

CID = 7


@dataclass
class _Commit:
    head_before: int
    head_after: int
    inserted: dict[int, tuple] = field(default_factory=dict)
    removed: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    counted: bool = True  # False: the node cannot know its new head (a trigger moved it)
    own: bool = True  # False: another node's commit, which this node never hears of


def _history(ops: list[tuple[str, int]]) -> tuple[list[dict[int, tuple]], list[_Commit]]:
    """States by head (state[h]: rows at head h) and the commits between them."""
    states: list[dict[int, tuple]] = [{}]
    commits: list[_Commit] = []
    next_key = 1
    for kind, n in ops:
        rows = dict(states[-1])
        head = len(states) - 1
        commit = _Commit(head, head + 1)
        if kind == "insert":
            for _ in range(n % 3 + 1):
                row = (next_key, f"id{next_key}", f"doc {next_key}", None, '{"a": 1}')
                rows[next_key] = row
                commit.inserted[next_key] = row
                next_key += 1
        elif kind == "delete" and rows:
            key = sorted(rows)[n % len(rows)]
            del rows[key]
            commit.removed.append(key)
        elif kind == "vector" and rows:
            pass  # a vector-only update: rows unchanged, head moves
        elif kind in ("document", "copy", "other node") and rows:
            key = sorted(rows)[n % len(rows)]
            rows[key] = rows[key][:2] + (f"edited at {head + 1}",) + rows[key][3:]
            commit.updated.append(key)
            commit.counted = kind != "copy"  # rows changed in a way the node does not count
            commit.own = kind != "other node"
        states.append(rows)
        commits.append(commit)
    return states, commits


def _report(cache: RowCache, commit: _Commit) -> None:
    written = WrittenRows(commit.head_before, commit.head_after)
    written.inserted.extend(commit.inserted.values())
    written.removed.extend(commit.removed)
    written.updated.extend(commit.updated)
    written.unknown_head = not commit.counted
    cache.written(CID, written)


operations = st.lists(
    st.tuples(
        st.sampled_from(["insert", "delete", "vector", "document", "copy", "other node"]),
        st.integers(0, 99),
    ),
    min_size=1,
    max_size=25,
)
reports = st.lists(
    st.tuples(st.sampled_from(["read", "commit", "next", "lookup"]), st.integers(0, 99)),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(operations, reports, st.sampled_from([0, 700, 10**6]))
@example([("insert", 0), ("document", 0)], [("next", 0), ("next", 0), ("lookup", 2)], 10**6)
def test_kept_rows_are_the_true_rows_at_the_head_asked_for(
    ops: list[tuple[str, int]], steps: list[tuple[str, int]], max_bytes: int
) -> None:
    states, commits = _history(ops)
    own = [c for c in commits if c.own]
    next_own = 0
    cache = RowCache(max_bytes)
    for kind, n in steps:
        head = n % len(states)
        if kind == "read":  # a warm read at `head` returns the true rows then (some keys)
            true = states[head]
            cache.read(CID, head, [true[k] for k in sorted(true)[n % 3 :: 2]])
        elif kind == "commit" and own:  # reported late or out of order
            _report(cache, own[n % len(own)])
        elif kind == "next" and next_own < len(own):  # the usual case: in commit order
            _report(cache, own[next_own])
            next_own += 1
        elif kind == "lookup":
            true = states[head]
            keys = sorted(true)[: n % 4 + 1]
            found = cache.rows(CID, head, keys)
            if found is not None:
                assert found == {k: true[k] + (None,) for k in keys}
        assert 0 <= cache.nbytes <= max_bytes


def test_own_commits_in_order_keep_every_inserted_row() -> None:
    """The path an ingest takes: one node's commits, reported in order, keep all rows."""
    states, commits = _history([("insert", 2)] * 10 + [("delete", 0), ("vector", 0)])
    cache = RowCache(10**6)
    for commit in commits:
        _report(cache, commit)
    head = len(states) - 1
    true = states[head]
    assert cache.rows(CID, head, sorted(true)) == {k: v + (None,) for k, v in true.items()}
    assert cache.rows(CID, head - 1, sorted(true)) is None  # only as of the newest head


def test_an_own_update_keeps_the_other_rows() -> None:
    states, commits = _history([("insert", 2), ("document", 0)])
    cache = RowCache(10**6)
    for commit in commits:
        _report(cache, commit)
    edited, other = sorted(states[2])[:2]
    assert cache.rows(CID, 2, [edited]) is None  # updated: read again when asked
    assert cache.rows(CID, 2, [other]) == {other: states[2][other] + (None,)}


def test_an_uncounted_change_drops_the_collection() -> None:
    states, commits = _history([("insert", 2), ("copy", 0)])
    cache = RowCache(10**6)
    _report(cache, commits[0])
    assert cache.rows(CID, 1, sorted(states[1])) is not None
    _report(cache, commits[1])
    assert cache.rows(CID, 1, sorted(states[1])) is None
    assert cache.rows(CID, 2, sorted(states[2])) is None
    assert not cache.likely(CID, 2)


def test_a_read_at_a_newer_head_keeps_none_of_the_older_rows() -> None:
    """Another node edited a kept row: a read at the newer head that did not read that row
    must not leave the old one answering for the new head."""
    states, _ = _history([("insert", 1), ("other node", 0), ("vector", 0)])
    cache = RowCache(10**6)
    cache.read(CID, 1, states[1].values())
    edited, other = sorted(states[1])
    cache.read(CID, 3, [states[3][other]])
    assert cache.rows(CID, 3, [edited]) is None
    assert cache.rows(CID, 3, [other]) == {other: states[3][other] + (None,)}
