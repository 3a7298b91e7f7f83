"""The admin routes of a running server: online backup and stats over HTTP.

An error status from the server raises `httpx.HTTPStatusError` carrying the status and body.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

ADMIN_ROUTE = "/api/v2/admin/"


def _admin_url(url: str, route: str) -> str:
    return url.rstrip("/") + ADMIN_ROUTE + route


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def download_backup(url: str, token: str | None, out: Path) -> None:
    """Stream a backup of the server at `url` (POST /api/v2/admin/backup) into `out`."""
    with httpx.stream(
        "POST", _admin_url(url, "backup"), headers=_headers(token), timeout=None
    ) as resp:
        if resp.status_code >= 400:
            message = f"HTTP {resp.status_code}: {resp.read().decode()}"
            raise httpx.HTTPStatusError(message, request=resp.request, response=resp)
        with open(out, "wb") as f:
            for chunk in resp.iter_bytes():
                f.write(chunk)


def fetch_stats(url: str, token: str | None) -> dict[str, Any]:
    """The stats of the server at `url` (GET /api/v2/admin/stats)."""
    admin_url = _admin_url(url, "stats")
    resp = httpx.get(admin_url, headers=_headers(token), timeout=None)
    if resp.status_code >= 400:
        message = f"{admin_url}: HTTP {resp.status_code}: {resp.text}"
        raise httpx.HTTPStatusError(message, request=resp.request, response=resp)
    return resp.json()
