"""The monitoring engine: asyncio + psycopg, no Qt.

``monitor.Monitor`` watches one StatBus database and reports ``state.Status`` values;
the CLI prints them, the tray app renders them. Everything here is importable without
PySide6 (a test enforces it), so the command line stays light and the logic is testable
without a screen.
"""
