"""chromadb's own client classes on huedb's engine, in-process (needs chromadb installed).

    from huedb.chroma_bridge import chroma_client
    client = chroma_client("./data")          # a real chromadb.ClientAPI

or, for code that builds its client from chromadb `Settings`, import this package first
and pass `Settings(chroma_api_impl=huedb.chroma_bridge.API_IMPL, ...)`. Nothing else in
huedb imports this package, so huedb runs without chromadb.
"""

from huedb.chroma_bridge.identifier import API_IMPL, install

install()

from huedb.chroma_bridge.client import chroma_client, chroma_settings  # noqa: E402
from huedb.chroma_bridge.server_api import HuedbServerAPI  # noqa: E402

__all__ = ["API_IMPL", "HuedbServerAPI", "chroma_client", "chroma_settings"]
