"""Fixture plugins for every test folder (pytest reads pytest_plugins only here)."""

pytest_plugins = ["tests.fix_db", "tests.fix_proxy"]
