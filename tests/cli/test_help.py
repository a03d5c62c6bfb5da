"""Help texts say what the commands do (the real console script, in a subprocess)."""

from __future__ import annotations

from tests.cli.conftest import Cli


def test_demo_no_tray_help_says_what_it_prints(cli: Cli) -> None:
    r = cli.run("demo", "--help")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())  # argparse wraps lines
    assert "print the states" not in text  # it never printed states
    assert "--no-tray" in text
    assert "connection string" in text
    assert "-v also prints every simulated step" in text
