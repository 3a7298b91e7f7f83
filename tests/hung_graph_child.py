"""A stand-in graph process (`engine/graph_process.py`'s protocol) whose save hangs: it
builds from the frames it is sent like the real one, but never returns from saving the
graph (until its parent kills it)."""

import sys
import time

from usearch.index import Index

from huedb.engine import graph_process

if __name__ == "__main__":
    Index.save = lambda self, path: time.sleep(600)
    sys.exit(graph_process._serve(sys.stdin.buffer, sys.stdout.buffer))
