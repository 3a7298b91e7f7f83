"""``chromadb.api.models`` for huedb: the paths chromadb's collection classes are imported
from (``from chromadb.api.models.Collection import Collection``, common in type hints)."""
