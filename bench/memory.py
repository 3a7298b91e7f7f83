"""Memory of the current process from /proc/self/status (Linux), in bytes."""

from __future__ import annotations

from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def status_bytes(field: str) -> int | None:
    """A `kB` field of /proc/self/status (e.g. "VmRSS", "VmHWM") in bytes; None if absent."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss() -> int | None:
    """Resident set size now."""
    return status_bytes("VmRSS")


def peak_rss() -> int | None:
    """High-water mark of the resident set size (VmHWM)."""
    return status_bytes("VmHWM")


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not possible here."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True
