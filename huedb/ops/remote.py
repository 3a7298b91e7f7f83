"""The admin routes of a running server: online backup and stats over HTTP.

An error status from the server raises `httpx.HTTPStatusError` carrying the status and body.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from huedb.api.client import auth_headers
from huedb.config import Settings
from huedb.engine import fileio
from huedb.errors import BackupError
from huedb.ops.backup import Manifest, check_archive
from huedb.process_ids import remove_left_by_dead_processes

ADMIN_ROUTE = "/api/v2/admin/"
DOWNLOAD_SUFFIX = ".download-"  # `.{out.name}.download-{pid}`: a transfer in progress


def _admin_url(url: str, route: str) -> str:
    return url.rstrip("/") + ADMIN_ROUTE + route


def _headers(token: str | None) -> dict[str, str]:
    """The token's header as huedb's clients send it (chromadb's token check included)."""
    return auth_headers(Settings(chroma_client_auth_credentials=token or None))


def download_backup(url: str, token: str | None, out: Path) -> Manifest:
    """Stream a backup of the server at `url` (POST /api/v2/admin/backup) into `out`.

    The file is received next to `out`, checked as restore checks it (manifest, size and
    SHA-256 of the database), made durable and only then renamed over `out`: a transfer that
    breaks off or delivers a damaged file leaves `out` as it was and no partial file.
    """
    out = out.resolve()
    _remove_stale_downloads(out)
    tmp = out.with_name(f".{out.name}{DOWNLOAD_SUFFIX}{os.getpid()}")
    with httpx.stream(
        "POST", _admin_url(url, "backup"), headers=_headers(token), timeout=None
    ) as resp:
        if resp.status_code >= 400:
            message = f"HTTP {resp.status_code}: {resp.read().decode()}"
            raise httpx.HTTPStatusError(message, request=resp.request, response=resp)
        try:
            with fileio.atomic_writer(out, tmp) as f:
                for chunk in resp.iter_bytes():
                    f.write(chunk)
                return check_archive(tmp)
        except httpx.TransportError as exc:
            raise BackupError(
                f"the backup transfer from {url} broke off ({exc}); {out} was left unchanged"
            ) from exc
        except BackupError as exc:
            raise BackupError(
                f"the backup received from {url} is incomplete or damaged ({exc}); {out} was "
                "left unchanged"
            ) from exc


def _remove_stale_downloads(out: Path) -> None:
    """Partial files of downloads into `out` whose process is gone (killed mid-transfer)."""
    remove_left_by_dead_processes(
        out.parent.glob(f".{out.name}{DOWNLOAD_SUFFIX}*"), lambda p: p.name.rsplit("-", 1)[-1]
    )


def fetch_stats(url: str, token: str | None) -> dict[str, Any]:
    """The stats of the server at `url` (GET /api/v2/admin/stats)."""
    admin_url = _admin_url(url, "stats")
    resp = httpx.get(admin_url, headers=_headers(token), timeout=None)
    if resp.status_code >= 400:
        message = f"{admin_url}: HTTP {resp.status_code}: {resp.text}"
        raise httpx.HTTPStatusError(message, request=resp.request, response=resp)
    return resp.json()
