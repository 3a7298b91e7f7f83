"""huedb's version, in a module of its own so any layer can read it without importing huedb."""

__version__ = "0.1.0"

# The chromadb release whose API huedb implements: what an in-process client's
# `get_version()` answers, as chromadb's own in-process client answers its version (code
# that checks it for features must not take huedb's own version for an old chromadb).
CHROMA_VERSION = "1.5.9"
