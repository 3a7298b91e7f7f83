"""A helper process's lifecycle (`engine/child_process.py`): its last words, its end."""

from __future__ import annotations

import signal
import sys
import time

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


def test_a_child_late_within_its_limit_is_killed_and_the_wait_fails() -> None:
    """A child that does not answer inside a `within` block: killed at the limit, so the
    read waiting on it returns (end of stream) instead of holding its caller; the limit
    overran is recorded."""
    child = Child([sys.executable, "-c", "import time; time.sleep(60)"])
    began = time.monotonic()
    with child.within(0.5):
        answer = child.stdout.readline()
    assert answer == b"" and time.monotonic() - began < 30
    assert child.timed_out == 0.5
    assert child.wait() == -signal.SIGKILL
    child.close()


def test_a_child_answering_within_its_limit_is_left_running() -> None:
    """A block that ends in time cancels the limit: the child goes on after it. (The child
    has started before the block: an interpreter's start on a loaded machine may take
    longer than the limit.)"""
    script = (
        "import sys\n"
        "print('ready', flush=True)\n"
        "for line in sys.stdin:\n"
        "    print(line.strip(), flush=True)\n"
    )
    child = Child([sys.executable, "-c", script])
    assert child.stdout.readline() == b"ready\n"
    with child.within(2.0):
        child.stdin.write(b"ping\n")
        child.stdin.flush()
        assert child.stdout.readline() == b"ping\n"
    time.sleep(2.5)  # past the limit
    assert child.running() and child.timed_out is None
    child.stdin.close()
    assert child.wait() == 0
    child.close()
