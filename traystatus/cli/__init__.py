"""The ``traystatus`` command line: a second consumer of :mod:`traystatus.core`.

``main.py`` builds the parser and dispatches; one module per group of sub-commands
(``watching`` for status/wait/watch, ``sqlcmd`` for install-sql/uninstall-sql, ``doctor``,
``profilecmd``); ``target`` turns --profile/--dsn into a conninfo and finds the password.
No Qt is imported unless the tray app is started (no sub-command).
"""
