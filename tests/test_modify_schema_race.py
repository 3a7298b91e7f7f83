"""`modify(configuration=...)` racing another process's writes keeps every written key.

Written metadata keys are added to the configuration's schema inside each write's
transaction; a modify that rewrote the configuration from a copy read before its own
transaction dropped the keys written in between (and the writer's per-connection cache of
known keys never added them back). The engine now applies the modify to the configuration
it reads inside its write transaction.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import huedb
from tests.cli import child_env

_WRITER = """
import sys
import huedb
path, n = sys.argv[1], int(sys.argv[2])
client = huedb.PersistentClient(path=path)
col = client.get_collection("raced", embedding_function=None)
print("ready", flush=True)
sys.stdin.readline()
for i in range(n):
    col.add(ids=[str(i)], embeddings=[[float(i), 1.0]], metadatas=[{f"key_{i}": i}])
client.close()
"""


def test_modify_configuration_keeps_keys_written_meanwhile(tmp_path: Path) -> None:
    """A writer process adds records with a new key each while this process modifies the
    collection's configuration in a loop: every key ends up in the schema."""
    path = tmp_path / "data"
    client = huedb.PersistentClient(path=path)
    col = client.create_collection("raced", embedding_function=None)
    n = 300
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), str(n)],
        env=child_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None and writer.stdin is not None
    assert writer.stdout.readline().strip() == "ready"
    writer.stdin.write("go\n")
    writer.stdin.flush()
    modifies = 0
    while writer.poll() is None:
        col.modify(configuration={"hnsw": {"ef_search": 100 + modifies % 50}})
        modifies += 1
    _, err = writer.communicate(timeout=300)
    assert writer.returncode == 0, err
    schema = client.get_collection("raced", embedding_function=None)._model.schema
    missing = sorted({f"key_{i}" for i in range(n)} - set(schema["keys"]))
    client.close()
    assert modifies > 0
    assert missing == [], f"{len(missing)} keys lost over {modifies} modifies: {missing[:5]}"
