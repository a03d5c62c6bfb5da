"""A review that waits: since when, who may end it, and when to remind.

StatBus holds every other import while a job waits for review, and the analyst who must
approve is told once. This module adds what a reminder needs, as plain data:

* ``REVIEW_WAIT_SQL``: per waiting job, when it entered waiting_for_review and whether this
  login may approve or reject it. Both by StatBus's own rules (source at commit 99371ab):

  - "since" is ``import_job.analysis_stop_at``: the BEFORE UPDATE OF state trigger
    (``admin.import_job_state_change_before``, since the first import migration) stamps it
    when a job leaves analysing_data, and a job with ``review`` goes from analysing_data to
    waiting_for_review in that update. NULL (a job moved there by hand) means unknown.
  - approving is ``UPDATE public.import_job SET state = 'approved' | 'rejected'`` (the
    app's review page; the AFTER trigger enqueues the processing). Row level security
    decides who may: policy ``import_job_admin_user_manage`` (FOR ALL TO admin_user) lets
    an administrator update every job; ``import_job_regular_user_update_own`` (FOR UPDATE
    TO regular_user, ``user_id = auth.uid()``) lets a regular user update their own;
    restricted and external users have no UPDATE grant. The query asks exactly that
    (table privilege, role membership, ownership), read-only.

* ``ReviewReminder``: pure timing, driven by a clock the caller passes in. A reminder is
  due once the review has waited ``every`` and the last reminder is ``every`` ago: at most
  one per interval, and one (not a burst) after a sleep that skipped several.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from traystatus.core.model.state import ReviewBlock

# Who may approve, when this login may not: StatBus's rule in words.
APPROVERS = "an administrator or the user who uploaded it can approve or reject it"

WAIT_LIMIT = 50  # waiting jobs read (one waits at a time in practice)

# One row per job waiting for review, oldest first: id, the time it entered the state,
# whether this login may UPDATE it (StatBus's RLS policies, see above). import_job is
# readable by every authenticated login (policy import_job_authenticated_select_all).
REVIEW_WAIT_SQL = f"""
SELECT j.id, j.analysis_stop_at,
       pg_catalog.has_table_privilege('public.import_job', 'UPDATE')
       AND (pg_catalog.pg_has_role('admin_user', 'MEMBER')
            OR (pg_catalog.pg_has_role('regular_user', 'MEMBER')
                AND j.user_id IS NOT DISTINCT FROM auth.uid() AND j.user_id IS NOT NULL))
FROM public.import_job AS j
WHERE j.state = 'waiting_for_review'
ORDER BY j.id
LIMIT {WAIT_LIMIT}
"""


def enrich(block: ReviewBlock, rows: Sequence[Sequence[object]]) -> ReviewBlock:
    """``block`` with ``since`` (the earliest stamp of its jobs) and ``may_approve`` (all of
    them) from REVIEW_WAIT_SQL's rows. Rows of jobs not in the block are ignored; a block
    job without a row (it moved on between the reads) leaves both as read."""
    ids = set(block.job_ids)
    stamps: list[datetime] = []
    allowed: list[bool] = []
    for row in rows:
        if len(row) < 3 or row[0] not in ids:
            continue
        if isinstance(row[1], datetime) and row[1].utcoffset() is not None:
            stamps.append(row[1])
        allowed.append(row[2] is True)
    if not allowed:
        return block
    return replace(block, since=min(stamps) if len(stamps) == len(allowed) else None,
                   may_approve=all(allowed))


def reminder_text(block: ReviewBlock, now: datetime, seen: datetime | None) -> tuple[str, str]:
    """The reminder's title and body: "Waiting for review for 2 h: lu_2026; 3 imports
    queued behind it" and what to do (or who can)."""
    title = block.text_at(now, seen)
    if block.may_approve is True:
        body = "You can approve or reject it in StatBus; the imports go on after that."
    elif block.may_approve is False:
        body = f"You cannot approve it with this login: {APPROVERS} in StatBus."
    else:
        body = f"In StatBus, {APPROVERS}."
    return title, body


def who_approves(block: ReviewBlock) -> str:
    """One line for the tooltip and details window: "" when this login may approve."""
    if block.may_approve is False:
        return APPROVERS[0].upper() + APPROVERS[1:] + "."
    return ""


@dataclass
class ReviewReminder:
    """When to remind of a review that waits (pure; the caller passes the clock).

    ``every``: the interval (Settings ``review_remind_s``); zero or less: never.
    ``seen``: when the app first saw the current review block (the "since" fallback).
    """

    every: timedelta
    seen: datetime | None = None
    last: datetime | None = None
    _key: tuple[int, ...] = ()

    def observe(self, block: ReviewBlock | None, now: datetime) -> None:
        """A new review block (or none): a different set of waiting jobs starts over."""
        key = tuple(block.job_ids) if block is not None else ()
        if key != self._key:
            self._key = key
            self.seen = now if key else None
            self.last = None

    def due(self, block: ReviewBlock | None, now: datetime) -> bool:
        """True when a reminder should go out now (then call ``told``)."""
        if block is None or self.every <= timedelta(0):
            return False
        waited = block.waited(now, self.seen)
        if waited is None or waited < self.every:
            return False
        return self.last is None or now - self.last >= self.every

    def told(self, now: datetime) -> None:
        self.last = now
