"""A stand-in recall measurement child (`engine/recall_process.py`'s protocol) that hangs:
it reads the request and neither answers nor exits (until its parent kills it)."""

import sys
import time

if __name__ == "__main__":
    sys.stdin.buffer.readline()
    time.sleep(600)
