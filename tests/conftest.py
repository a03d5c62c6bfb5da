"""Fixture plugins for every test folder (pytest reads pytest_plugins only here)."""

import signal

pytest_plugins = ["tests.fix_db", "tests.fix_proxy"]

# A run started as a background job of a script inherits SIGINT ignored, and an ignored
# signal stays ignored across exec: every child a test starts would ignore the Ctrl-C it is
# sent. A handled signal is reset to its default in the child (tests/test_child_signals.py).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
