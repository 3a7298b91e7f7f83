"""Admin-only routes: online backup (streamed as a file) and stats."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from huedb.ops.backup import admin_backup_dir, backup, storage_error
from huedb.ops.stats import gather_stats
from huedb.server.json_response import OrjsonResponse
from huedb.server.strict_json import StrictJsonRoute

router = APIRouter(
    prefix="/api/v2/admin", default_response_class=OrjsonResponse, route_class=StrictJsonRoute
)


@router.post("/backup")
def backup_now(request: Request) -> FileResponse:
    """A consistent backup of the live database, as a tar file download.

    A full disk answers 507 and an I/O error 503; either way nothing is left behind.
    """
    work: Path | None = None
    try:
        work = admin_backup_dir()
        out = work / "huedb-backup.tar"
        backup(request.app.state.api.engine, out, show_progress=False)
    except BaseException as exc:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        storage = storage_error(exc)
        if storage is not None:
            raise storage from exc
        raise
    return FileResponse(
        out,
        media_type="application/x-tar",
        filename="huedb-backup.tar",
        background=BackgroundTask(shutil.rmtree, work, ignore_errors=True),
    )


@router.get("/stats")
def stats(request: Request) -> dict[str, Any]:
    """Sizes, memory, this worker's recent query latency, and scale warnings."""
    api = request.app.state.api
    return gather_stats(api.engine, Path(request.app.state.config.path))
