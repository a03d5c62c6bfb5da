"""The soak's score on hand-made timelines: the judge must be able to say FAIL."""

from __future__ import annotations

from bench.soak import score, truth_periods

T = [(0.0, False), (10.0, True), (20.0, False), (30.0, None), (32.0, False), (40.0, True)]


def test_a_client_that_lags_more_than_two_seconds_is_wrong() -> None:
    claims = [(0.0, False), (13.5, True), (20.5, False), (40.1, True)]
    s = score("c", claims, T, 0.0, 50.0)
    assert [(a, b) for a, b, _ in s.wrong_windows] == [(10.0, 13.5), (20.0, 20.5), (40.0, 40.1)]
    assert s.wrong_over_limit == 1 and s.longest_wrong == 3.5
    assert s.periods == 2 and not s.missed


def test_grey_is_not_wrong_but_counted_and_a_period_never_said_is_missed() -> None:
    claims = [(0.0, False), (9.0, None), (25.0, False)]
    s = score("c", claims, T, 0.0, 50.0)
    assert s.grey_total == 16.0
    assert s.missed_grey == [(10.0, 20.0)] and s.missed == [(40.0, 50.0)]
    # the last period was never said: stable while the truth is processing from 40 s
    assert s.wrong_windows == [(40.0, 50.0, False)] and s.wrong_over_limit == 1


def test_an_unreadable_truth_carries_the_last_reading() -> None:
    # the server was down from 30 s to 32 s: the tables did not change meanwhile
    s = score("c", [(0.0, False), (10.0, True), (20.0, False), (31.0, True)], T, 0.0, 39.0)
    assert s.wrong_windows == [(31.0, 39.0, True)]


def test_a_wrong_window_in_a_silence_is_blind_until_the_client_goes_grey() -> None:
    claims = [(0.0, False), (10.0, True), (20.0, False), (45.0, None), (46.0, True)]
    s = score("c", claims, T, 0.0, 50.0, silences=[35.0])
    assert s.wrong_windows == [] and s.blind_windows == [(40.0, 45.0, False)]
    assert s.blind_over_limit == 0 and s.longest_blind == 5.0
    # once the client has gone grey after the silence began, it knows: wrong again
    s = score("c", [(0.0, False), (10.0, True), (20.0, False), (36.0, None), (37.0, False)],
              T, 0.0, 50.0, silences=[35.0])
    assert s.blind_windows == [] and s.wrong_over_limit == 1


def test_truth_periods() -> None:
    assert truth_periods([t for t in T if t[1] is not None], 50.0) == [(10.0, 20.0),
                                                                       (40.0, 50.0)]


def test_a_period_missed_in_a_silence_is_counted_apart() -> None:
    truth = [(0.0, False), (10.0, True), (12.0, False)]
    s = score("c", [(0.0, False)], truth, 0.0, 30.0, silences=[9.0])
    assert s.missed == [] and s.missed_blind == [(10.0, 12.0)]
    s = score("c", [(0.0, False)], truth, 0.0, 30.0)
    assert s.missed == [(10.0, 12.0)] and s.missed_blind == []


def test_a_period_missed_while_grey_is_counted_apart() -> None:
    truth = [(0.0, False), (10.0, True), (12.0, False)]
    s = score("c", [(0.0, False), (9.0, None), (15.0, False)], truth, 0.0, 30.0)
    assert s.missed == [] and s.missed_grey == [(10.0, 12.0)]


def test_a_silence_within_two_seconds_of_a_change_blinds_too() -> None:
    # the network went silent 14 ms after the change: the client had no chance to hear of it
    truth = [(0.0, False), (10.0, True)]
    claims = [(0.0, False), (15.6, None)]
    s = score("c", claims, truth, 0.0, 20.0, silences=[10.014])
    assert s.wrong_windows == [] and s.blind_windows == [(10.0, 15.6, False)]
    # silent 3 s after the change: the client had its 2 s, so the window is wrong
    s = score("c", claims, truth, 0.0, 20.0, silences=[13.0])
    assert s.wrong_over_limit == 1 and s.blind_windows == []
