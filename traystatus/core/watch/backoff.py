"""Exponential backoff with jitter, as a small pure object.

Why jitter: after a server restart every client of a deployment reconnects at once; a
random spread keeps them from arriving in lock step. Why a cap: a person waiting for the
server to come back should not wait more than a minute after it does.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays of about ``initial`` seconds, doubling per failure up to ``cap``.

    ``next_delay()`` returns the delay before the next attempt and counts the failure;
    ``reset()`` is called after a success so the next failure starts small again.
    """

    def __init__(
        self,
        initial: float = 1.0,
        cap: float = 60.0,
        factor: float = 2.0,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0 or cap < initial or factor < 1 or not 0 <= jitter < 1:
            raise ValueError("backoff needs 0 < initial <= cap, factor >= 1, 0 <= jitter < 1")
        self.initial = initial
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self._rng = rng or random.Random()
        self.attempt = 0

    def base_delay(self, attempt: int) -> float:
        """The delay without jitter before retry number ``attempt`` (1-based)."""
        exponent = max(0, attempt - 1)
        # Stop multiplying once past the cap: factor ** 2000 would overflow a float.
        delay = self.initial
        for _ in range(exponent):
            delay *= self.factor
            if delay >= self.cap:
                return self.cap
        return min(delay, self.cap)

    def next_delay(self) -> float:
        """Count one more failure and return how long to wait before retrying."""
        self.attempt += 1
        base = self.base_delay(self.attempt)
        spread = base * self.jitter
        return min(self.cap, max(0.0, base + self._rng.uniform(-spread, spread)))

    def reset(self) -> None:
        """After a success: the next failure waits ``initial`` again."""
        self.attempt = 0
