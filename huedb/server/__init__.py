"""huedb's HTTP server: Chroma's v2 API over the same `LocalAPI` as the embedded clients."""
