"""The web console at `/console`: static files served by `huedb run` itself (no build step),
and the read routes it needs beyond Chroma's API (docs/operations.md, "Web console")."""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
PREFIX = "/console"
# The console's files are open without a token (the page asks for one; every API call it
# makes carries it). Only these exact paths: anything else under /console needs a token.
STATIC_NAMES = frozenset(p.name for p in STATIC_DIR.iterdir() if p.is_file())
OPEN_PATHS = frozenset({PREFIX, PREFIX + "/", *(f"{PREFIX}/{name}" for name in STATIC_NAMES)})
