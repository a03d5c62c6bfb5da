"""The watch engine: the Monitor life cycle (connect, session, failure, retry), the readers
that turn a database into a Status (installed SQL, or StatBus's own channels: builtin), the
read schedule and stability rule, the import-endings ledger, and the SourceBase shell a relay
client shares. Imports words, model, pg and config."""
