"""A write that committed just before another process deleted its collection: the write
stands (no error to its caller), and the index catch-up that finds the collection gone is
an INFO line, not an ERROR with a traceback (two `huedb run` workers race so)."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import huedb
from huedb.api.client import clear_system_cache
from huedb.engine.engine import Engine
from tests.cli import child_env

DELETE = textwrap.dedent(
    """
    import sys, huedb
    client = huedb.PersistentClient(path=sys.argv[1])
    client.delete_collection("raced")
    client.close()
    """
)


def test_a_write_whose_collection_is_deleted_before_its_catch_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client = huedb.PersistentClient(path=tmp_path)
    col = client.create_collection("raced")
    col.add(ids=["a"], embeddings=[[1.0, 2.0]])
    refresh = Engine._refresh_index

    def deleted_meanwhile(engine: Engine, collection_uuid: str) -> None:
        subprocess.run([sys.executable, "-c", DELETE, str(tmp_path)], check=True, env=child_env({}))
        refresh(engine, collection_uuid)

    monkeypatch.setattr(Engine, "_refresh_index", deleted_meanwhile)
    caplog.set_level(logging.INFO, logger="huedb")
    col.add(ids=["b"], embeddings=[[3.0, 4.0]])  # committed: no error
    monkeypatch.undo()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "was deleted just after a write to it" in caplog.text
    with pytest.raises(huedb.errors.NotFoundError):
        client.get_collection("raced")
    assert not list((tmp_path / "index").glob(f"{col.id}*"))
    client.close()
    clear_system_cache()
