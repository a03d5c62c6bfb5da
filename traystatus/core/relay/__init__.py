"""The relay client: the state from a `traystatus serve` server over WebSocket, every message
validated into the model (_messages) before it is believed. Imports the watch engine's shell
(SourceBase, backoff, timing) and everything below it."""
