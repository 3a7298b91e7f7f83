"""Fork lineage, for `fork_count` (Chroma Cloud's): the number of forks made in a collection's
lineage tree, the same for every member (a source forked 5 times, and each of its 5 forks,
answer 5; a fork of a fork adds 1 to the whole tree). Deleting a member does not lower it:
the count is of forks made, as Chroma Cloud's limit of "fork edges from root" counts them.

Kept in the catalog's `huedb_meta` key-value table, in the write transaction of the fork:
`fork_root:<fork uuid>` -> the uuid of its tree's root (the first source), and
`fork_edges:<root uuid>` -> forks made in that tree. A collection never forked, nor forked
from, has neither (count 0). Deleting a collection drops its `fork_root` key, and its tree's
count once no member is left. The SQL runs unchanged on SQLite and PostgreSQL: `execute` is
the session's statement runner and `mark` its parameter placeholder (`?` or `%s`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

Execute = Callable[[str, tuple[Any, ...]], Any]

ROOT = "fork_root:"
EDGES = "fork_edges:"
LINEAGE_ROWS = (
    f"SELECT key, value FROM huedb_meta WHERE substr(key, 1, {len(ROOT)}) = '{ROOT}' "
    f"OR substr(key, 1, {len(EDGES)}) = '{EDGES}'"
)
"""Every lineage row (`key, value`), for copies of a whole store."""


def _value(execute: Execute, mark: str, key: str) -> str | None:
    row = execute(f"SELECT value FROM huedb_meta WHERE key = {mark}", (key,)).fetchone()
    return None if row is None else str(row[0])


def _root(execute: Execute, mark: str, collection_uuid: str) -> str:
    return _value(execute, mark, ROOT + collection_uuid) or collection_uuid


def record_fork(execute: Execute, mark: str, source_uuid: str, fork_uuid: str) -> None:
    """Put `fork_uuid` in `source_uuid`'s tree and count one more fork there (an atomic
    increment: concurrent forks in one tree on PostgreSQL both count)."""
    root = _root(execute, mark, source_uuid)
    execute(
        f"INSERT INTO huedb_meta (key, value) VALUES ({mark}, {mark})", (ROOT + fork_uuid, root)
    )
    execute(
        f"INSERT INTO huedb_meta (key, value) VALUES ({mark}, '1') ON CONFLICT (key) DO UPDATE "
        "SET value = CAST(CAST(huedb_meta.value AS BIGINT) + 1 AS TEXT)",
        (EDGES + root,),
    )


def fork_count(execute: Execute, mark: str, collection_uuid: str) -> int:
    """Forks made in the collection's lineage tree."""
    edges = _value(execute, mark, EDGES + _root(execute, mark, collection_uuid))
    return 0 if edges is None else int(edges)


def forget(execute: Execute, mark: str, deleted_uuids: Iterable[str]) -> None:
    """Drop the lineage of collections whose rows were just deleted: their `fork_root`
    keys, and the count of every tree left without a member."""
    roots = set()
    for deleted in deleted_uuids:
        roots.add(_root(execute, mark, deleted))
        execute(f"DELETE FROM huedb_meta WHERE key = {mark}", (ROOT + deleted,))
    for root in roots:
        member = execute(
            f"SELECT 1 FROM collections WHERE uuid = {mark} UNION ALL SELECT 1 FROM huedb_meta "
            f"WHERE substr(key, 1, {len(ROOT)}) = '{ROOT}' AND value = {mark} LIMIT 1",
            (root, root),
        ).fetchone()
        if member is None:
            execute(f"DELETE FROM huedb_meta WHERE key = {mark}", (EDGES + root,))
