"""The password order as one pure rule (core/config/password.py ``next_step``): what to try
next, or the answer, for what is known so far. The drivers (``resolve``, ``resolve_async``)
only do the I/O it asks for; tests/app/test_password_order.py runs both against a real
server and tests/cli the CLI's use of them."""

from __future__ import annotations

import psycopg
import pytest

from traystatus.core.config.password import (
    AskKeychain,
    Known,
    Probe,
    Probed,
    Resolution,
    Source,
    Step,
    next_step,
    probed,
)

DSN = "host=h dbname=d"
PROBE = Probe("dbname=d host=h connect_timeout=10")
DOWN = psycopg.OperationalError("connection refused")

# (conninfo, keychain name, what is known) -> the next step
TABLE: list[tuple[str, str | None, Known, Step]] = [
    # 1. the DSN's own password: nothing to try
    ("host=h password=pw", "work", Known(), Resolution(Source.DSN)),
    ("host=h password=pw", None, Known(), Resolution(Source.DSN)),
    # 2. libpq's own sources first, with a connect timeout unless the DSN has one
    (DSN, "work", Known(), PROBE),
    (DSN, None, Known(), PROBE),
    ("host=h connect_timeout=3", "work", Known(), Probe("host=h connect_timeout=3")),
    (DSN, "work", Known(Probed.CONNECTED), Resolution(Source.LIBPQ)),
    (DSN, None, Known(Probed.CONNECTED), Resolution(Source.LIBPQ)),
    # 3. the server asked: the keychain, for a named profile only
    (DSN, "work", Known(Probed.ASKED), AskKeychain("work")),
    (DSN, "work", Known(Probed.ASKED, asked_keychain=True, stored="pw"),
     Resolution(Source.KEYCHAIN, "pw")),
    (DSN, "work", Known(Probed.ASKED, asked_keychain=True, stored=""),
     Resolution(Source.KEYCHAIN, "")),
    # 4. none known
    (DSN, "work", Known(Probed.ASKED, asked_keychain=True), Resolution(Source.NEEDED)),
    (DSN, None, Known(Probed.ASKED), Resolution(Source.NEEDED)),
    # failed otherwise: undecided, the keychain's password (if any) goes along
    (DSN, "work", Known(Probed.FAILED, DOWN), AskKeychain("work")),
    (DSN, "work", Known(Probed.FAILED, DOWN, True, "pw"),
     Resolution(Source.UNDECIDED, "pw", DOWN)),
    (DSN, "work", Known(Probed.FAILED, DOWN, True), Resolution(Source.UNDECIDED, None, DOWN)),
    (DSN, None, Known(Probed.FAILED, DOWN), Resolution(Source.UNDECIDED, None, DOWN)),
]


@pytest.mark.parametrize(("conninfo", "name", "known", "expected"), TABLE)
def test_the_rule(conninfo: str, name: str | None, known: Known, expected: Step) -> None:
    assert next_step(conninfo, name, known) == expected


def test_a_conninfo_that_does_not_parse_is_a_failed_probe() -> None:
    """Never probed (connecting will say what is wrong); the keychain's password still goes
    along, as for a server that is down."""
    bad = "host=h nonsense"
    assert next_step(bad, "work") == AskKeychain("work")
    end = next_step(bad, "work", Known(asked_keychain=True, stored="pw"))
    assert isinstance(end, Resolution) and end.source is Source.UNDECIDED
    assert end.password == "pw" and isinstance(end.error, psycopg.ProgrammingError)
    end = next_step(bad, None)
    assert isinstance(end, Resolution) and end.source is Source.UNDECIDED
    assert end.password is None and end.error is not None


def test_every_path_ends_in_at_most_three_steps() -> None:
    """Drive the rule with every outcome the I/O can give: it never asks twice."""
    for name in ("work", None):
        for outcome in Probed:
            for stored in ("pw", None):
                known, steps = Known(), []
                while not isinstance(step := next_step(DSN, name, known), Resolution):
                    steps.append(step)
                    assert len(steps) <= 2, steps
                    if isinstance(step, Probe):
                        known = Known(outcome, DOWN if outcome is Probed.FAILED else None)
                    else:
                        known = Known(known.probe, known.error, True, stored)
                assert steps[0] == PROBE
                assert (AskKeychain("work") in steps) == (
                    name is not None and outcome is not Probed.CONNECTED)


def test_the_outcome_of_a_probe_that_was_not_asked_for_a_password() -> None:
    assert probed(None) is Probed.CONNECTED
    assert probed(DOWN) is Probed.FAILED  # no pgconn: never reached libpq's password step


def test_no_secret_in_what_is_shown() -> None:
    assert "pw" not in repr(Known(Probed.ASKED, asked_keychain=True, stored="pw"))
    assert "pw" not in repr(Resolution(Source.KEYCHAIN, "pw"))
