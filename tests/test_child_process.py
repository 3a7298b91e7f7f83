"""A helper process's lifecycle (`engine/child_process.py`): its last words, its end."""

from __future__ import annotations

import signal
import sys

from huedb.engine.child_process import LAST_WORDS, Child


def test_last_words_are_the_end_of_a_long_stderr() -> None:
    """A child that wrote far more than a pipe holds to stderr (multi-byte characters
    included) and exited: its last words are the last LAST_WORDS characters, decoded."""
    script = "import sys; sys.stderr.write('é' * 300_000 + ' the end\\n')"
    child = Child([sys.executable, "-c", script])
    assert child.wait() == 0
    words = child.last_words()
    assert len(words) == LAST_WORDS and words.endswith("é the end")
    child.close()
    assert child.last_words() == ""


def test_a_running_child_is_killed_and_reaped() -> None:
    child = Child([sys.executable, "-c", "import time; time.sleep(60)"])
    assert child.running()
    child.end()
    child.end()  # ending twice is harmless
    assert child.returncode == -signal.SIGKILL and not child.running()
    assert child.stdin.closed and child.stdout.closed
    child.close()
