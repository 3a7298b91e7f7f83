"""A stand-in recall measurement child (`engine/recall_process.py`'s protocol) that writes
far more to stdout than a pipe holds, and no answer, then exits: the parent must read
stdout as it comes rather than wait for the exit first."""

import sys

if __name__ == "__main__":
    sys.stdin.buffer.readline()
    sys.stdout.write("noise " * 200_000)  # ~1.2 MB
    sys.stdout.flush()
