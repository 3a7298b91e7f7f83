"""Chroma's Search API, client side (`chromadb.execution`): the expression builders."""
