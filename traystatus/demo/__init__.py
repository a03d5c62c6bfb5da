"""The demo: an embedded PostgreSQL with the StatBus stand-in, a simulator of StatBus
work, and ``traystatus demo`` that runs them beside the real tray app."""
