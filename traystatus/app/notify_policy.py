"""When to notify, and what to say: the decisions, with no Qt and no D-Bus.

The tray app feeds this class three things - every new ``Status``, every work summary
(processing -> stable) and a clock tick once a second - and sends whatever ``Notice`` /
``Withdraw`` it returns (traystatus.app.notifications does the sending). Keeping the
decisions here, as plain data in and out, lets the tests drive them with a fake clock
through flapping, bursts, sleep and pauses without a notification server.

The rules, and why:

* "Processing finished" only after processing lasted ``min_processing`` (Settings'
  ``notify_min_processing_s``, 30 s by default): a short flip is not news. Finishes that
  follow each other within ``burst_window`` are added up into the notice already on
  screen (same key, replaced in place), never a stack.
* An import job that ended failed, or finished with errors, gets its own critical notice
  naming the job, once per job.
* Connection lost: only when the monitor stayed disconnected past a grace period (Settings'
  ``disconnect_grace_s``, 60 s by default; 3 times that and at least 3 min right after
  start or after a wake from sleep - networks take time to come up).
  Repeated losses are rate-limited like BuildNotify does: episodes 1, 2, 3, 5, 8, 13, ...
  are announced, the others are not; a long healthy spell resets the count. When the
  connection comes back after an announced loss, "Reconnected" replaces it.
* ERROR (bad password, SQL missing, ...) will not heal by waiting: announced at once,
  once per problem kind, under the same rate limit.
* A review that waits: told once when it starts; then, while it still waits, a reminder
  each ``review_remind`` (Settings' ``review_remind_s``, 2 h by default, 0 = never) that
  names the waiting time and the imports held behind it - at most one per interval, one
  after a sleep that skipped several - and only to a login that may approve it by
  StatBus's rule (or may not be known to, through a relay: then it says who can).
  Timing in core/model/review.py (``ReviewReminder``).
* Each kind can be switched off; ``pause(until)`` silences everything.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from traystatus.core.config.profiles import Settings
from traystatus.core.model.details import WorkSummary
from traystatus.core.model.jobs import EndedJob
from traystatus.core.model.review import ReviewReminder, reminder_text, who_approves
from traystatus.core.model.state import Problem, State, Status
from traystatus.core.model.upgrade import UpgradePhase
from traystatus.core.words.wording import plural

# Keys for replace-in-place: one notice per key is on screen at a time.
KEY_FINISHED = "finished"
KEY_CONNECTION = "connection"
KEY_REVIEW = "review"
KEY_UPGRADE = "upgrade"
UPGRADE_REMIND = timedelta(minutes=15)
"""A scheduled upgrade told earlier than this before its time is told again this long before."""


class Kind(enum.Enum):
    """The kinds a user can switch off one by one in Settings."""

    FINISHED = "finished"
    JOB_FAILED = "job_failed"
    CONNECTION = "connection"
    ERROR = "error"
    REVIEW = "review"  # a job waits for review (StatBus holds its import queue), and when done
    IMPORT_ENDED = "import_ended"  # an import job ended: mine (or all, by Settings)
    UPGRADE = "upgrade"  # StatBus's software upgrade: scheduled, running, ended


class Urgency(enum.Enum):
    LOW = "low"
    NORMAL = "normal"
    CRITICAL = "critical"


class Action(enum.Enum):
    """Buttons a notice may carry; the app maps them to what they do."""

    SHOW_DETAILS = "show_details"
    RECONNECT = "reconnect"


@dataclass(frozen=True)
class Notice:
    """Show (or replace, when a notice with the same ``key`` is on screen) a notification."""

    kind: Kind
    key: str
    title: str
    body: str
    urgency: Urgency = Urgency.NORMAL
    actions: tuple[Action, ...] = ()
    icon: str = "stable"  # the state icon to show with it (resources/icons/<icon>.svg)
    job_id: int | None = None  # "Show details" opens the details window on this job
    deployment: str | None = None  # a watched deployment's notice: the window opens on it


@dataclass(frozen=True)
class Withdraw:
    """Remove the notice with this key if it is still on screen: it is obsolete."""

    key: str


Decision = Notice | Withdraw


@dataclass
class NotifyOptions:
    """The user's notification settings (Settings dialog)."""

    finished: bool = True
    job_failed: bool = True
    connection: bool = True
    error: bool = True
    review: bool = True
    imports: str = "mine"  # which ended imports get their own notice: mine | all
    min_processing: timedelta = timedelta(seconds=30)
    review_remind: timedelta = timedelta(hours=2)  # zero: never remind
    grace: timedelta = timedelta(seconds=60)
    grace_after_start: timedelta = timedelta(minutes=3)
    burst_window: timedelta = timedelta(minutes=2)
    # A healthy connection for this long forgets earlier losses (the rate limit restarts).
    healthy_reset: timedelta = timedelta(minutes=30)
    # A tick gap this long means the machine slept (or the process was frozen).
    wake_gap: timedelta = timedelta(seconds=30)

    def enabled(self, kind: Kind) -> bool:
        return {
            Kind.FINISHED: self.finished,
            Kind.JOB_FAILED: self.job_failed,
            Kind.CONNECTION: self.connection,
            Kind.ERROR: self.error,
            Kind.REVIEW: self.review,
            Kind.IMPORT_ENDED: True,
            Kind.UPGRADE: True,
        }[kind]

    @classmethod
    def from_settings(cls, settings: Settings) -> NotifyOptions:
        """The user's Settings (traystatus.core.config.profiles) as policy options."""
        grace = timedelta(seconds=settings.disconnect_grace_s)
        return cls(
            finished=settings.notify_stable,
            job_failed=settings.notify_import_failed,
            connection=settings.notify_disconnected,
            error=settings.notify_error,
            review=bool(getattr(settings, "notify_review", True)),
            imports=str(getattr(settings, "import_notices", "mine")),
            min_processing=timedelta(seconds=settings.notify_min_processing_s),
            review_remind=timedelta(seconds=float(getattr(settings, "review_remind_s", 7200.0))),
            grace=grace,
            grace_after_start=max(grace * 3, timedelta(minutes=3)),
        )


def fibonacci_hit(n: int) -> bool:
    """True for 1, 2, 3, 5, 8, 13, 21, ...: which repeated failures are announced."""
    a, b = 1, 2
    while a < n:
        a, b = b, a + b
    return a == n


@dataclass
class _Burst:
    """The finished notice on screen, and what it has added up so far."""

    summary: WorkSummary
    shown_at: datetime


@dataclass
class NotificationPolicy:
    """Decides which notices to show; see the module docstring for the rules."""

    options: NotifyOptions = field(default_factory=NotifyOptions)
    started_at: datetime | None = None

    def __post_init__(self) -> None:
        self._status: Status | None = None
        self._last_tick: datetime | None = None
        self._grace_base: datetime | None = self.started_at  # start or wake time
        self._lost_since: datetime | None = None
        self._lost_announced = False
        self._episodes = 0
        self._healthy_since: datetime | None = None
        self._error_announced: Problem | None = None
        self._burst: _Burst | None = None
        self._seen_jobs: set[int] = set()
        self._paused_until: datetime | None = None
        self._review_announced: set[int] = set()  # jobs whose review was announced, once
        self._review_shown = False  # a review notice is out: say when the block clears
        self._reminder = ReviewReminder(self.options.review_remind)
        self._upgrades_told: set[tuple[int, UpgradePhase]] = set()  # (row, phase): once
        self._upgrades_seen: set[int] = set()  # rows seen scheduled or running
        self._upgrade_told_at: dict[int, datetime] = {}  # when its schedule was told
        self._upgrades_reminded: set[int] = set()

    # -- inputs ------------------------------------------------------------------------
    def pause(self, until: datetime) -> None:
        self._paused_until = until

    def resume(self) -> None:
        self._paused_until = None

    def paused(self, now: datetime) -> bool:
        return self._paused_until is not None and now < self._paused_until

    @property
    def paused_until(self) -> datetime | None:
        return self._paused_until

    def on_status(self, status: Status, now: datetime) -> list[Decision]:
        """A new Status from the monitor."""
        self._status = status
        out: list[Decision] = self._upgrade(status, now)
        if status.state is State.UPGRADING:
            # Neither health nor trouble: the database may be down for the backup, and
            # that is no connection problem to announce.
            return out
        if status.state in (State.STABLE, State.PROCESSING):
            out += self._review(status, now)
            if self._healthy_since is None:
                self._healthy_since = now
            self._lost_since = None
            self._error_announced = None
            if self._lost_announced:
                self._lost_announced = False
                back = self._emit(
                    Notice(
                        Kind.CONNECTION,
                        KEY_CONNECTION,
                        "Reconnected",
                        f"The database answers again; the system is {status.state.value}.",
                        Urgency.LOW,
                    ),
                    now,
                )
                # Not allowed to say so (paused, switched off): at least take the
                # obsolete "lost" notice away.
                out += back or [Withdraw(KEY_CONNECTION)]
            return out
        if status.state == State.CONNECTING:
            # Neither starts nor ends an episode: monitors pass through it on every retry.
            return out
        if self._lost_since is None:
            # A new episode of trouble (DISCONNECTED <-> ERROR moves stay in one episode).
            if self._healthy_since is not None and (
                now - self._healthy_since >= self.options.healthy_reset
            ):
                self._episodes = 0
            self._healthy_since = None
            self._lost_since = now
            self._episodes += 1
        if status.state == State.ERROR:
            if status.problem != self._error_announced and fibonacci_hit(self._episodes):
                self._error_announced = status.problem
                out += self._announce_loss(status, now, critical=True)
            return out
        return out + self.tick(now)

    def _review(self, status: Status, now: datetime) -> list[Decision]:
        """A job starts waiting for review: say so once per job (the analysts who can act
        should know that StatBus holds the imports behind it). The block clears: say so
        once, replacing the first notice."""
        block = status.review
        waiting = set(block.job_ids) if block is not None else set()
        out: list[Decision] = []
        new = waiting - self._review_announced
        self._reminder.observe(block, now)
        if block is not None and new:
            self._review_announced |= new
            self._review_shown = True
            body = "A person must review it in StatBus before the imports go on."
            if block.queued_behind:
                body = (f"StatBus holds {plural(block.queued_behind, 'import')} behind it "
                        "until someone reviews it.")
            who = who_approves(block)
            if who:
                body += " " + who
            told = self._emit(Notice(Kind.REVIEW, KEY_REVIEW,
                                     block.text_at(now, self._reminder.seen), body,
                                     Urgency.NORMAL, (Action.SHOW_DETAILS,), icon="review"), now)
            if told:
                self._reminder.told(now)  # the next word on it is a reminder, an interval on
            out += told
        elif block is None and self._review_shown:
            self._review_shown = False
            out += self._emit(Notice(Kind.REVIEW, KEY_REVIEW, "Review done",
                                     "No import waits for review: the import queue runs again.",
                                     Urgency.LOW, icon="stable"), now) or [Withdraw(KEY_REVIEW)]
        return out

    def _upgrade(self, status: Status, now: datetime) -> list[Decision]:
        """StatBus's software upgrade: told once per row and phase. Scheduled: ahead of
        time; running: data unavailable; its end only when this app saw it coming or
        running (not every start of the app for the next hours)."""
        up = status.upgrade
        if up is None or up.key in self._upgrades_told:
            return []
        if up.ended and up.id not in self._upgrades_seen:
            self._upgrades_told.add(up.key)
            return []
        self._upgrades_told.add(up.key)
        self._upgrades_seen.add(up.id)
        title = up.text(now.astimezone())
        if up.phase is UpgradePhase.SCHEDULED:
            self._upgrade_told_at[up.id] = now
            body, urgency, icon = ("Save your work in StatBus before then; the tray shows "
                                   "when the upgrade runs and ends."), Urgency.NORMAL, "upgrading"
        elif up.phase is UpgradePhase.RUNNING:
            body, urgency, icon = ("Data is unavailable or changing until it ends; the "
                                   "tray says when."), Urgency.NORMAL, "upgrading"
        elif up.phase is UpgradePhase.COMPLETED:
            body, urgency, icon = ("StatBus is back; the tray shows the state of the data "
                                   "again."), Urgency.NORMAL, "stable"
        elif up.phase is UpgradePhase.ROLLED_BACK:
            title = "The StatBus upgrade failed and was rolled back"
            body = ((up.error + "\n") if up.error else "") + (
                "The previous version runs again; tell the StatBus administrator.")
            urgency, icon = Urgency.CRITICAL, "error"
        else:
            title = "The StatBus upgrade failed"
            body = ((up.error + "\n") if up.error else "") + (
                "Tell the StatBus administrator.")
            urgency, icon = Urgency.CRITICAL, "error"
        return self._emit(Notice(Kind.UPGRADE, KEY_UPGRADE, title, body, urgency,
                                 (Action.SHOW_DETAILS,), icon), now)

    def _upgrade_reminder(self, st: Status | None, now: datetime) -> list[Decision]:
        """A scheduled upgrade told long ago is told again ``UPGRADE_REMIND`` before its
        time (once; not when its first notice was just now)."""
        up = st.upgrade if st is not None else None
        if (up is None or up.phase is not UpgradePhase.SCHEDULED or up.scheduled_at is None
                or up.id in self._upgrades_reminded):
            return []
        left = up.scheduled_at - now
        if not timedelta(0) < left <= UPGRADE_REMIND:
            return []
        self._upgrades_reminded.add(up.id)
        told = self._upgrade_told_at.get(up.id)
        if told is None or up.scheduled_at - told <= UPGRADE_REMIND:
            return []
        minutes = max(1, round(left.total_seconds() / 60))
        return self._emit(Notice(
            Kind.UPGRADE, KEY_UPGRADE, up.text(now.astimezone()),
            f"In {minutes} min. Save your work in StatBus before then.", Urgency.NORMAL,
            (Action.SHOW_DETAILS,), "upgrading"), now)

    def on_summary(self, summary: WorkSummary, now: datetime) -> list[Decision]:
        """A processing run ended (the system turned stable)."""
        out: list[Decision] = []
        for job in summary.import_jobs:
            if (job.has_errors or job.rejected) and job.id not in self._seen_jobs:
                self._seen_jobs.add(job.id)
                out += self._emit(self._job_notice(job), now)
        burst = self._burst
        if burst is not None and now - burst.shown_at <= self.options.burst_window:
            merged = burst.summary.merged(summary)
            self._burst = _Burst(merged, now)
            out += self._emit(self._finished_notice(merged), now)
            return out
        if summary.duration < self.options.min_processing:
            return out
        self._burst = _Burst(summary, now)
        out += self._emit(self._finished_notice(summary), now)
        return out

    def on_import_end(self, job: EndedJob, now: datetime) -> list[Decision]:
        """An import job ended: its own notice when it is the login's own (or for every
        job, by Settings), once per job ("Processing finished" still sums up all)."""
        if not job.ended:
            return []  # not an ending (waiting_for_review is the review notice's business)
        if job.id in self._seen_jobs or (self.options.imports != "all" and not job.mine):
            return []
        self._seen_jobs.add(job.id)
        whose = "Your import" if job.mine else "Import"
        how = job.ending_words  # core/model/jobs.py: "stopped with an error", ...
        if job.failed or (job.has_errors and not job.rejected):
            urgency, icon = Urgency.CRITICAL, "error"
        else:
            urgency, icon = Urgency.NORMAL, "stable"
        return self._emit(
            Notice(
                Kind.IMPORT_ENDED,
                f"job-{job.id}",
                f"{whose} '{job.title}' {how}",
                job.text,
                urgency,
                (Action.SHOW_DETAILS,),
                icon,
                job_id=job.id,
            ),
            now,
        )

    def review_seen(self) -> datetime | None:
        """When this app first saw the current review block (the waiting time's fallback
        when StatBus's stamp is not known)."""
        return self._reminder.seen

    def _remind(self, now: datetime) -> list[Decision]:
        """A review still waits an interval after the last word on it: remind, if this
        login may approve it (or cannot tell)."""
        st = self._status
        block = st.review if st is not None and st.is_known else None
        self._reminder.every = self.options.review_remind  # Settings may have changed it
        if block is None or block.may_approve is False or not self._reminder.due(block, now):
            return []
        title, body = reminder_text(block, now, self._reminder.seen)
        out = self._emit(Notice(Kind.REVIEW, KEY_REVIEW, title, body, Urgency.NORMAL,
                                (Action.SHOW_DETAILS,), icon="review"), now)
        if out:
            self._reminder.told(now)
            self._review_shown = True
        return out

    def tick(self, now: datetime) -> list[Decision]:
        """Once a second: grace periods end, sleeps are noticed, pauses run out, a review
        that still waits is reminded of."""
        out: list[Decision] = []
        last, self._last_tick = self._last_tick, now
        if last is not None and now - last >= self.options.wake_gap:
            # Woke from sleep: networks come back slowly; give them the long grace again.
            self._grace_base = now
            if self._lost_since is not None and not self._lost_announced:
                self._lost_since = now
        if self._paused_until is not None and now >= self._paused_until:
            self._paused_until = None
        st = self._status
        out += self._upgrade_reminder(st, now)
        if (
            st is not None
            and st.state == State.DISCONNECTED
            and self._lost_since is not None
            and not self._lost_announced
            and now - self._lost_since >= self._grace(now)
            and fibonacci_hit(self._episodes)
        ):
            out += self._announce_loss(st, now, critical=False)
        out += self._remind(now)
        return out

    # -- helpers ---------------------------------------------------------------------
    def _grace(self, now: datetime) -> timedelta:
        base = self._grace_base
        if base is not None and self._lost_since is not None and (
            self._lost_since - base < self.options.grace_after_start
        ):
            return max(self.options.grace, self.options.grace_after_start)
        return self.options.grace

    def _announce_loss(self, st: Status, now: datetime, critical: bool) -> list[Decision]:
        if st.state == State.ERROR:
            title = "Cannot watch the database"
        else:
            title = "Connection to the database lost"
        body = st.message or "The database does not answer."
        body += " The tray icon shows when it is back."
        out = self._emit(
            Notice(
                Kind.ERROR if st.state == State.ERROR else Kind.CONNECTION,
                KEY_CONNECTION,
                title,
                body,
                Urgency.CRITICAL if critical else Urgency.NORMAL,
                (Action.RECONNECT, Action.SHOW_DETAILS),
                "error" if st.state == State.ERROR else "disconnected",
            ),
            now,
        )
        # Only what reached the screen counts as announced: a loss that happened during a
        # pause is announced when the pause ends, if it still lasts.
        self._lost_announced = bool(out)
        return out

    def _emit(self, notice: Notice, now: datetime) -> list[Decision]:
        if not self.options.enabled(notice.kind) or self.paused(now):
            return []
        return [notice]

    @staticmethod
    def _finished_notice(s: WorkSummary) -> Notice:
        return Notice(
            Kind.FINISHED,
            KEY_FINISHED,
            "Processing finished",
            s.text,
            Urgency.NORMAL,
            (Action.SHOW_DETAILS,),
        )

    @staticmethod
    def _job_notice(job: EndedJob) -> Notice:
        if job.failed:
            title = f"Import job failed: {job.slug}"
        elif job.rejected:
            title = f"Import job rejected at review: {job.slug}"
        else:
            title = f"Import job {job.ending_words}: {job.slug}"
        lines = []
        if job.description:
            lines.append(job.description)
        counts = []
        if job.error_count:
            counts.append(plural(job.error_count, "error"))
        if job.warning_count:
            counts.append(plural(job.warning_count, "warning"))
        if counts:
            lines.append(", ".join(counts))
        if job.error_line:
            lines.append(job.error_line)
        return Notice(
            Kind.JOB_FAILED,
            f"job-{job.id}",
            title,
            "\n".join(lines) or "See the import job in StatBus.",
            Urgency.CRITICAL,
            (Action.SHOW_DETAILS,),
            "error",
        )
