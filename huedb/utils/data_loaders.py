"""``chromadb.utils.data_loaders``: chromadb's data loaders (``ImageLoader``) when chromadb
is installed (`chroma_names`); huedb's collections take any loader (``data_loader=``)."""

from typing import Any

from huedb.utils.chroma_names import chromadb_name


def __getattr__(name: str) -> Any:
    return chromadb_name("chromadb.utils.data_loaders", name, __name__, "no data loader of its own")
