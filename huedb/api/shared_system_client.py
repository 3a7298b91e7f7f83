"""``chromadb.api.shared_system_client``: `SharedSystemClient`, whose
``clear_system_cache()`` test suites call between tests."""

from huedb.api.client import SharedSystemClient

__all__ = ["SharedSystemClient"]
