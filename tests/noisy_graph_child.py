"""A stand-in graph process (`engine/graph_process.py`'s child) that writes far more to
stderr than a pipe holds and exits without reading its frames: the parent must learn that
it failed, and why, rather than wait on it."""

import sys

if __name__ == "__main__":
    sys.stdin.buffer.readline()
    sys.stderr.write("noise " * 200_000 + "the stand-in gave up\n")  # ~1.2 MB
    sys.stderr.flush()
    sys.exit(1)
