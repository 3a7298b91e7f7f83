"""`PgSession`: the calls of one PostgreSQL transaction (`engine.store.StoreSession`)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

from huedb.engine.budget import Deadline
from huedb.engine.postgres_store.admin import AdminSQL
from huedb.engine.postgres_store.catalog import CatalogSQL
from huedb.engine.postgres_store.connection import statement_timeouts
from huedb.engine.postgres_store.records import RecordsSQL


class PgSession(CatalogSQL, RecordsSQL, AdminSQL):
    """Store calls on one pooled connection, inside the transaction its store opened."""

    @contextlib.contextmanager
    def time_budget(self, seconds: float) -> Iterator[Deadline]:
        """Run a block under a deadline of `seconds` (0: none).

        Each statement of the block runs under `SET LOCAL statement_timeout` (the budget),
        and the deadline is checked before each statement and between batches of Python
        loops (`run`, `check_deadline`), so a block overruns its budget by at most one
        statement's worth. A statement PostgreSQL cancels for it, or a spent deadline,
        ends the block with QueryTimeoutError. The previous timeout is restored after.
        """
        deadline = Deadline(seconds)
        if seconds <= 0:
            yield deadline
            return
        if not self._writable and seconds == self.read_timeout:
            # This read session began with this very timeout (`SET LOCAL` sent with its
            # BEGIN, store.read): nothing to set nor restore.
            with self._deadline_errors(deadline):
                yield deadline
            return
        previous = self.run(
            "SELECT current_setting('statement_timeout'), set_config('statement_timeout', %s, "
            "true)",
            (f"{math.ceil(seconds * 1000)}ms",),
        ).fetchone()[0]
        with self._deadline_errors(deadline):
            yield deadline
        self.run("SELECT set_config('statement_timeout', %s, true)", (previous,))

    @contextlib.contextmanager
    def _deadline_errors(self, deadline: Deadline) -> Iterator[None]:
        """Check `deadline` before each statement of the block; a statement PostgreSQL
        cancelled for its timeout becomes the deadline's QueryTimeoutError."""
        self._deadline = deadline
        try:
            with statement_timeouts(deadline):
                yield
        finally:
            self._deadline = None
