"""Progress bars for long operations: shown on a terminal, silent otherwise."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


def progress(total: int | None, desc: str, unit: str = "rec", enabled: bool | None = None) -> Any:
    """A tqdm bar that only draws when stderr is a terminal (or when forced)."""
    show = sys.stderr.isatty() if enabled is None else enabled
    return tqdm(total=total, desc=desc, unit=unit, disable=not show, leave=False)
