"""A stand-in recall measurement child (`engine/recall_process.py`'s protocol) whose
measurement fails: it answers with the error, as the real child does."""

import json
import sys

if __name__ == "__main__":
    sys.stdin.buffer.readline()
    sys.stdout.write(json.dumps({"error": "MemoryError()"}) + "\n")
    sys.stdout.flush()
