"""Words: the pure text primitives everyone shares (plurals and durations, printable text
from the network, secrets redacted). Imports nothing else of traystatus."""
