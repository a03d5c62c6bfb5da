"""Configuration and credentials: profiles on disk, the keychain, which password a login
uses, TLS environment, log files. Imports words, model and pg."""
