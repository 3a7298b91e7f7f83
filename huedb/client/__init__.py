"""Clients that reach a huedb (or Chroma) server over HTTP."""
