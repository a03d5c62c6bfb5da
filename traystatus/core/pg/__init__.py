"""Talking to PostgreSQL: connecting (failed logins keep their SQLSTATE), the link a watcher
holds (queries with deadlines, LISTEN), libpq settings checked before connecting, our packaged
SQL and its version, and what an error means (diagnosis: pure words; probe: the second look at
the network). Imports words and model."""
