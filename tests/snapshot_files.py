"""Hand-made snapshot files for the tests that damage them."""

from __future__ import annotations

import json
import zlib

import xxhash


def with_payload(snapshot_file: bytes, payload: bytes) -> bytes:
    """The bytes of a snapshot file with another payload, its header's length and
    checksums (XXH3-64 of the payload, CRC-32 of the header line) made to match it."""
    magic_end = snapshot_file.index(b"\n") + 1
    header_end = snapshot_file.index(b"\n", magic_end)
    header = json.loads(snapshot_file[magic_end:header_end])
    header["length"] = len(payload)
    header["xxh3"] = xxhash.xxh3_64_intdigest(payload)
    line = json.dumps(header).encode()
    return snapshot_file[:magic_end] + line + b"\n" + b"%08x\n" % zlib.crc32(line) + payload
