"""A stand-in recall measurement child (`engine/recall_process.py`'s protocol) that writes
far more to stderr than a pipe holds before it answers: the parent must not wait on it."""

import json
import sys

if __name__ == "__main__":
    sys.stdin.buffer.readline()
    sys.stderr.write("noise " * 200_000)  # ~1.2 MB
    sys.stderr.flush()
    sys.stdout.write(json.dumps({"calibration": None}) + "\n")
    sys.stdout.flush()
