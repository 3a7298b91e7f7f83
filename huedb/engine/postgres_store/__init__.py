"""The PostgreSQL store (`PostgresStore`): huedb's truth in a PostgreSQL database."""

from huedb.engine.postgres_store.store import PostgresStore

__all__ = ["PostgresStore"]
