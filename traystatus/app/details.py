"""The details window: import jobs with progress, the analytics pipeline, the connection.

A view of the core's ``Details`` snapshots (traystatus.core.model.details); it computes nothing
beyond formatting. One ``DeploymentSection`` per deployment: the one chosen under Profile,
then each watched one (app/deployments.py), each fed by its own source. The window asks
every section's source for details only while it is visible (showEvent / hideEvent), so
a closed window costs the databases nothing. It does not connect to the
adapter's signals itself: the controller hands it every Status and Details (one render
per update; connecting here as well rendered each update twice).

Responsive with 200 jobs and 10^4 tasks: the SQL sends at most 500 jobs and 50 tasks plus
counts per command, and the rows here are a pool of widgets that are reused (texts
updated in place, extra rows hidden), never rebuilt on every snapshot.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from datetime import datetime

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QHideEvent, QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from traystatus.app import palette, texts
from traystatus.app.adapter import MonitorAdapter
from traystatus.app.icons import IconCache, IconStyle, accessible_name, kind_for, render_pixmap
from traystatus.app.joblabel import job_label
from traystatus.app.palette import Tone
from traystatus.core.model.details import Details, ImportJob
from traystatus.core.model.progress import percent
from traystatus.core.model.review import who_approves
from traystatus.core.model.state import State, Status, utcnow
from traystatus.core.model.today import DayView
from traystatus.core.words.wording import format_duration, plural


# Setters that touch the widget only when the value changes: with 200 rows refreshed a few
# times a second, a style sheet re-applied for nothing costs more than everything else.
def _text(label: QLabel, text: str) -> None:
    if label.text() != text:
        label.setText(text)


def _style(widget: QWidget, sheet: str) -> None:
    if widget.styleSheet() != sheet:
        widget.setStyleSheet(sheet)


def _visible(widget: QWidget, visible: bool) -> None:
    if widget.isHidden() == visible:  # isHidden(): hidden by us, whatever the parent does
        widget.setVisible(visible)


def _format(bar: QProgressBar, text: str) -> None:
    if bar.format() != text:
        bar.setFormat(text)


class JobRow(QFrame):
    """One import job; reused for whichever job sits at its position next time."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setObjectName("jobRow")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.setSpacing(3)
        top = QHBoxLayout()
        self.title = QLabel()
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.state = QLabel()
        self.state.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        top.addWidget(self.title, 1)
        top.addWidget(self.state)
        lay.addLayout(top)
        self.slug = QLabel()
        self.slug.setTextFormat(Qt.TextFormat.PlainText)
        lay.addWidget(self.slug)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(True)
        lay.addWidget(self.bar)
        self.rows = QLabel()
        lay.addWidget(self.rows)
        self.problems = QLabel()
        self.problems.setWordWrap(True)
        self.problems.setTextFormat(Qt.TextFormat.PlainText)
        lay.addWidget(self.problems)
        self.job_id: int | None = None

    def show_job(self, job: ImportJob, now: datetime, mine: bool = False,
                 review: str | None = None) -> None:
        """Render ``job`` (joblabel.job_label decides every word and tone); ``review``:
        the job(s) waiting for review that hold the queue, named in a held job's row."""
        self.job_id = job.id
        label = job_label(job, now, review)
        dark = palette.dark_window(self)
        _text(self.title, job.title)
        _text(self.slug, f"{job.slug} · job {job.id}" + (" · ★ yours" if mine else ""))
        _style(self.slug, palette.text_css(Tone.MUTED, dark))
        _text(self.state, label.state)
        _style(self.state, palette.text_css(label.tone, dark, bold=label.strong))

        _visible(self.bar, label.bar is not None)
        if label.bar is not None:
            if label.permille is None:
                self.bar.setRange(0, 0)  # busy, no number yet
                self.bar.setValue(0)
            else:
                self.bar.setRange(0, 1000)
                self.bar.setValue(label.permille)
            _format(self.bar, label.bar)
        # A held job's bar stands still and is greyed: nothing works on it now.
        self.bar.setEnabled(label.tone is not Tone.HELD)
        self.bar.setAccessibleName(f"{job.title}: {self.bar.format()}")

        _text(self.rows, label.rows)
        _visible(self.rows, bool(label.rows))
        _text(self.problems, label.problems)
        _style(self.problems, palette.text_css(label.problems_tone, dark))
        _visible(self.problems, bool(label.problems))


class DeploymentSection(QFrame):
    """One deployment in the details window: its state in words with the state icon, the
    derive pipeline, its import jobs and analytics. ``name`` is shown (before the
    headline) when the window lists several deployments. Its details are asked of
    ``want`` (the deployment's own source) only while the window is open."""

    reconnectRequested = Signal(object)  # this section ("Reconnect now")
    revealRequested = Signal(object)  # a widget of this section to scroll into view

    def __init__(
        self,
        want: Callable[[bool], None] | None,
        status: Status,
        clock: Callable[[], datetime] = utcnow,
        name: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("deployment")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)  # the focus bar
        self.want = want
        self.name = name
        self.clock = clock
        self.status = status
        self.details: Details | None = None
        self._subscribed = False

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        self.icon = QLabel()
        self.icon.setFixedSize(48, 48)
        head.addWidget(self.icon, 0, Qt.AlignmentFlag.AlignTop)
        col = QVBoxLayout()
        self.headline = QLabel()
        self.headline.setTextFormat(Qt.TextFormat.PlainText)  # a profile's name is text
        self.headline.setWordWrap(True)
        f = self.headline.font()
        f.setPointSizeF(f.pointSizeF() * 1.35)
        f.setBold(True)
        self.headline.setFont(f)
        self.subline = QLabel()
        self.subline.setWordWrap(True)
        # When it will be stable (Status.progress.estimate) and how that was reached.
        self.estimate = QLabel()
        self.estimate.setWordWrap(True)
        self.estimate.setTextFormat(Qt.TextFormat.PlainText)  # words from a server
        self.estimate.setAccessibleName("When it will be stable")
        self.estimate_how = QLabel()
        self.estimate_how.setWordWrap(True)
        self.estimate_how.setTextFormat(Qt.TextFormat.PlainText)
        self.estimate_how.setStyleSheet("font-style: italic;")
        self.source_note = QLabel()
        self.source_note.setWordWrap(True)
        self.source_note.setAccessibleName("How the state is read")
        self.source_note.setStyleSheet("color: palette(mid);")
        col.addWidget(self.headline)
        col.addWidget(self.subline)
        col.addWidget(self.estimate)
        col.addWidget(self.estimate_how)
        col.addWidget(self.source_note)
        col.addStretch(1)  # keep the text at the top when the lists below are hidden
        head.addLayout(col, 1)
        self.reconnect = QPushButton("Reconnect now")
        self.reconnect.clicked.connect(lambda: self.reconnectRequested.emit(self))
        head.addWidget(self.reconnect, 0, Qt.AlignmentFlag.AlignTop)
        outer.addLayout(head)

        self.review_note = QLabel(
            "An import job waits for review: StatBus holds back the other imports until a "
            "person approves or rejects it."
        )
        self.review_note.setWordWrap(True)
        outer.addWidget(self.review_note)

        # The derive pipeline as progress: StatBus's phases, their step, tasks done of
        # the total (Status.progress: the numbers of the tray's tooltip).
        self.pipeline_box = QFrame()
        self.pipeline_box.setObjectName("pipeline")
        pipe = QVBoxLayout(self.pipeline_box)
        pipe.setContentsMargins(0, 4, 0, 4)
        self.pipeline_title = QLabel("Derive pipeline")
        self.pipeline_title.setStyleSheet("font-weight: bold;")
        pipe.addWidget(self.pipeline_title)
        self.phase_rows: list[tuple[QLabel, QProgressBar]] = []
        for _ in range(2):  # statistical units, reports
            label = QLabel()
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setTextVisible(True)
            pipe.addWidget(label)
            pipe.addWidget(bar)
            self.phase_rows.append((label, bar))
        outer.addWidget(self.pipeline_box)

        # The jobs and analytics under the headline, hidden when there is nothing to list.
        body = QWidget()
        body.setObjectName("listing")
        self._body = body
        self.body = QVBoxLayout(body)
        self.jobs_title = QLabel()
        self.jobs_title.setStyleSheet("font-weight: bold;")
        jobs_head = QHBoxLayout()
        jobs_head.addWidget(self.jobs_title, 1)
        # My imports: the jobs whose user is the StatBus user behind the login.
        self.only_mine = QCheckBox("Only my imports")
        self.only_mine.setVisible(False)
        self.only_mine.toggled.connect(self._render)
        jobs_head.addWidget(self.only_mine)
        self.body.addLayout(jobs_head)
        self.me: int | None = None
        self._focus: int | None = None
        self.jobs_box = QVBoxLayout()
        self.jobs_box.setSpacing(4)
        self.body.addLayout(self.jobs_box)
        self.rows: list[JobRow] = []

        self.analytics_title = QLabel()
        self.analytics_title.setStyleSheet("font-weight: bold;")
        self.body.addWidget(self.analytics_title)
        self.analytics_line = QLabel()
        self.analytics_line.setWordWrap(True)
        self.body.addWidget(self.analytics_line)
        self.by_command = QTableWidget(0, 4)
        self.by_command.setHorizontalHeaderLabels(["Command", "Running", "Queued", "Total"])
        self.by_command.verticalHeader().setVisible(False)
        self.by_command.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.by_command.horizontalHeader().setSectionResizeMode(
            0, QHeaderView.ResizeMode.Stretch
        )
        self.by_command.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.body.addWidget(self.by_command)
        self.toggle_tasks = QPushButton("Show individual tasks")
        self.toggle_tasks.setCheckable(True)
        self.toggle_tasks.toggled.connect(self._render)
        self.body.addWidget(self.toggle_tasks, 0, Qt.AlignmentFlag.AlignLeft)
        self.tasks = QTableWidget(0, 5)
        self.tasks.setHorizontalHeaderLabels(["Task", "Command", "State", "Depth", "Running for"])
        self.tasks.verticalHeader().setVisible(False)
        self.tasks.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.tasks.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.tasks.setMinimumHeight(220)
        self.body.addWidget(self.tasks)
        self.tasks_note = QLabel()
        self.body.addWidget(self.tasks_note)
        body.setContentsMargins(0, 0, 0, 0)
        self.body.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(body)

        # What happened today (core/model/today.py): read only while the window is open.
        self.today_box = QFrame()
        self.today_box.setObjectName("today")
        today = QVBoxLayout(self.today_box)
        today.setContentsMargins(0, 6, 0, 0)
        self.today_title = QLabel("Today")
        self.today_title.setStyleSheet("font-weight: bold;")
        today.addWidget(self.today_title)
        self.today_lines = QLabel()
        self.today_lines.setTextFormat(Qt.TextFormat.RichText)
        self.today_lines.setWordWrap(True)
        today.addWidget(self.today_lines)
        self.today_note = QLabel()
        self.today_note.setWordWrap(True)
        self.today_note.setStyleSheet("color: palette(placeholder-text);")
        today.addWidget(self.today_note)
        outer.addWidget(self.today_box)
        self.day: DayView | None = None
        self.today_box.setVisible(False)

        self._render()

    # -- the details subscription (the window says when: while it is open) --------------------
    def subscribe(self, on: bool) -> None:
        if self.want is not None and on != self._subscribed:
            self._subscribed = on
            self.want(on)
            if not on:
                self.day = None  # read again when shown again
                self._render_day()
            if not on and self.details is not None:
                # No longer refreshed: shown again, the window would list stale jobs
                # until the next read. The headline (Status) stays current meanwhile.
                self.details = None
                self._render()

    def set_want(self, want: Callable[[bool], None] | None, open_now: bool) -> None:
        """A new source (restart, other profile): move the details subscription to it."""
        self.subscribe(False)
        self.want = want
        self.details = None
        self.subscribe(open_now)
        self._render()

    # -- inputs -------------------------------------------------------------------------------
    def set_status(self, status: Status) -> None:
        self.status = status
        self._render()

    def set_details(self, details: Details) -> None:
        self.details = details
        self._render()

    def set_day(self, day: DayView) -> None:
        """What happened today (core/model/today.py), while the window is open."""
        self.day = day
        self._render_day()

    def _render_day(self) -> None:
        day = self.day if self._subscribed else None
        self.today_box.setVisible(day is not None)
        if day is None:
            return
        lines = []
        for e in reversed(day.entries):  # the newest first
            text = html.escape(e.text)
            if e.bad:
                text = palette.span(text, Tone.PROBLEM, palette.dark_window(self))
            lines.append(f"{e.at.astimezone().strftime('%H:%M')}&nbsp;&nbsp;{text}")
        self.today_lines.setText("<br>".join(lines) if lines else "Nothing yet today.")
        self.today_note.setText(day.note)
        self.today_note.setVisible(bool(day.note))

    def set_me(self, me: int | None) -> None:
        """The StatBus user behind the login: their jobs are marked and can be filtered."""
        self.me = me
        self._render()

    def focus_job(self, job_id: int) -> None:
        """Bring one job's row into view and frame it (a notice's "Show details")."""
        self._focus = job_id
        if job_id not in {j.id for j in self._shown_jobs()}:
            self.only_mine.setChecked(False)
        self._render()

    def _shown_jobs(self) -> tuple[ImportJob, ...]:
        details = self.details if self.status.is_known else None
        jobs = details.import_jobs if details is not None else ()
        if self.only_mine.isChecked() and self.me is not None:
            jobs = tuple(j for j in jobs if j.user_id == self.me)
        return jobs

    # -- rendering ----------------------------------------------------------------------------
    def _render(self) -> None:
        now = self.clock()
        details = self.details if self.status.is_known else None
        # One snapshot per redraw: the headline and the ring count the jobs as the rows
        # below show them (texts.one_snapshot), never an older or newer reading.
        st = texts.one_snapshot(self.status, details)
        pct = texts.progress_pct(st)
        self.icon.setPixmap(
            render_pixmap(kind_for(st), 48, IconStyle.COLOR, pct, self.devicePixelRatioF())
        )
        self.icon.setAccessibleName(accessible_name(st, pct))
        empty = details is not None and not details.import_jobs and not (
            details.analytics.active_total
        )
        if st.state == State.STABLE and (details is None or empty):
            headline = (
                f"All data processing complete, stable since {texts.local_hhmm(st.since)}"
            )
        else:
            headline = texts.headline(st, now)
        _text(self.headline, f"{self.name}: {headline}" if self.name else headline)
        sub = texts.detail_line(st, now)
        if st.state == State.STABLE and details is not None and not empty:
            sub = "Recently ended import jobs are listed below."
        if st.review is not None and st.is_known:
            # "Waiting for review for 2 h 5 min: lu_2026; 2 imports queued behind it"
            sub = st.review.text_at(now) + "."
            who = who_approves(st.review)
            if who:
                sub += "\n" + who
        if st.upgrade is not None and st.state is not State.UPGRADING:
            # "StatBus will be upgraded at 22:00: data unavailable for a while", or its end
            line = st.upgrade.text(now) + "."
            sub = f"{line}\n{sub}" if sub else line
        self.subline.setText(sub)
        self.subline.setVisible(bool(sub))
        when = texts.estimate_line(st)
        found = st.progress.estimate if when and st.progress is not None else None
        self.estimate.setText(when)
        self.estimate.setVisible(bool(when))
        how = found.how[:1].upper() + found.how[1:] + "." if found and found.how else ""
        self.estimate_how.setText(how)
        self.estimate_how.setVisible(bool(how))
        # Said only when it matters to the reader: StatBus watched directly (or a server).
        note = texts.source_line(st) if st.is_known and st.source != "installed" else ""
        self.source_note.setText(note)
        self.source_note.setVisible(bool(note))
        self.reconnect.setVisible(st.state in (State.DISCONNECTED, State.ERROR) or (
            st.state is State.UPGRADING and st.problem is not None))
        self.review_note.setVisible(details is not None and details.review_blocks_imports)
        _style(self.review_note, palette.note_css(palette.dark_window(self)))

        jobs = self._shown_jobs()
        self._render_pipeline(st)
        self._render_jobs(jobs, details, now)
        self._render_analytics(details, now)
        # Nothing to list (stable, or not connected): no empty frame under the headline.
        self._body.setVisible(details is not None and not empty)

    def _render_pipeline(self, st: Status) -> None:
        progress = st.progress if st.state == State.PROCESSING else None
        phases = progress.phases if progress is not None else ()
        shown = 0
        for (label, bar), phase in zip(self.phase_rows, phases, strict=False):
            if phase.state in ("completed", "failed"):
                _text(label, f"{phase.title}: done")
                bar.setRange(0, 1000)
                bar.setValue(1000)
                _format(bar, "Done")
            elif phase.pending:
                _text(label, f"{phase.title}: queued")
                bar.setRange(0, 1000)
                bar.setValue(0)
                _format(bar, "Queued")
            else:
                _text(label, f"{phase.title} · step: {phase.step_words}")
                pct = percent(phase.pct)
                if pct is None:
                    bar.setRange(0, 0)  # busy, no count yet
                    _format(bar, phase.step_words)
                else:
                    bar.setRange(0, 1000)
                    bar.setValue(round(phase.completed * 1000 / phase.total))
                    _format(bar, f"{phase.completed:,} of {phase.total:,} tasks ({pct} %)")
            bar.setAccessibleName(f"{phase.title}: {bar.format()}")
            _visible(label, True)
            _visible(bar, True)
            shown += 1
        for label, bar in self.phase_rows[shown:]:
            _visible(label, False)
            _visible(bar, False)
        queued = progress is not None and not phases and (
            progress.derive_queued
        )
        if queued:
            label, bar = self.phase_rows[0]
            _text(label, "Statistical units: queued")
            bar.setRange(0, 1000)
            bar.setValue(0)
            _format(bar, "Queued")
            _visible(label, True)
            _visible(bar, True)
        _visible(self.pipeline_box, bool(phases) or queued)

    def _render_jobs(
        self, jobs: tuple[ImportJob, ...], details: Details | None, now: datetime
    ) -> None:
        while len(self.rows) < len(jobs):
            row = JobRow()
            self.rows.append(row)
            self.jobs_box.addWidget(row)
        # QProgressBar.setValue() repaints at once when its text changes; with updates off
        # the whole batch is painted once afterwards, and only the rows on screen.
        body = self._body
        # The job a notice pointed at: a frame.
        focus = palette.focus_css("jobRow", palette.dark_window(self))
        review = _review_names(details)
        body.setUpdatesEnabled(False)
        try:
            for row, job in zip(self.rows, jobs, strict=False):
                row.show_job(job, now, mine=self.me is not None and job.user_id == self.me,
                             review=review)
                _style(row, focus if job.id == self._focus else "")
                _visible(row, True)
            for row in self.rows[len(jobs):]:
                _visible(row, False)
        finally:
            body.setUpdatesEnabled(True)
        if details is None:
            self.jobs_title.setVisible(False)
            return
        total = details.import_jobs_total
        active = len(details.active_jobs)
        title = f"Import jobs: {active} active"
        if total > len(jobs):
            title += f" (showing {len(jobs)} of {total})"
        elif len(jobs) > active:
            title += f", {len(jobs) - active} waiting or recently ended"
        self.jobs_title.setText(title)
        self.jobs_title.setVisible(bool(jobs) or self.only_mine.isChecked())
        self.only_mine.setVisible(self.me is not None and bool(details.import_jobs))
        focused = next((r for r in self.rows if r.job_id == self._focus and r.isVisible()),
                       None)
        if focused is not None:
            self.revealRequested.emit(focused)

    def _render_analytics(self, details: Details | None, now: datetime) -> None:
        a = details.analytics if details is not None else None
        visible = a is not None and a.active_total > 0
        for w in (self.analytics_title, self.analytics_line, self.by_command, self.toggle_tasks):
            w.setVisible(visible)
        show_tasks = visible and self.toggle_tasks.isChecked()
        self.tasks.setVisible(show_tasks)
        self.tasks_note.setVisible(show_tasks)
        if a is None or not visible:
            return
        self.analytics_title.setText("Analytics (derive pipeline)")
        self.analytics_line.setText(
            f"{plural(a.active_total, 'task')} to go: "
            f"{a.count_in('processing'):,} running, {a.count_in('waiting'):,} waiting for "
            f"their sub-tasks, {a.queued:,} queued"
        )
        per: dict[str, dict[str, int]] = {}
        for c in a.by_command:
            per.setdefault(c.command, {})[c.state] = c.count
        commands = list(a.by_command_totals)
        _fill(
            self.by_command,
            [
                (
                    cmd,
                    f"{per[cmd].get('processing', 0) + per[cmd].get('waiting', 0):,}",
                    f"{per[cmd].get('pending', 0) + per[cmd].get('interrupted', 0):,}",
                    f"{sum(per[cmd].values()):,}",
                )
                for cmd in commands
            ],
        )
        h = self.by_command.horizontalHeader().height() + 4
        h += sum(self.by_command.rowHeight(i) for i in range(self.by_command.rowCount()))
        self.by_command.setFixedHeight(min(h, 320))
        if show_tasks:
            rows = []
            for t in a.tasks:
                running = ""
                if t.process_start_at is not None and t.state == "processing":
                    running = format_duration((now - t.process_start_at).total_seconds())
                rows.append((str(t.id), t.command, t.state, str(t.depth), running))
            _fill(self.tasks, rows)
            self.tasks_note.setText(
                f"Showing {len(a.tasks)} of {a.active_total:,} tasks (running ones first)."
            )
        self.toggle_tasks.setText(
            "Hide individual tasks" if self.toggle_tasks.isChecked() else "Show individual tasks"
        )


class DetailsWindow(QWidget):
    """The window: a section per deployment, the one chosen under Profile first, then the
    other watched ones (Settings), in one scrolling list. The controller feeds each
    section its deployment's Status and Details and answers ``reconnectRequested`` (the
    "Reconnect now" button of the first section). Every section's details are read only
    while the window is open: showing it subscribes them all, hiding it unsubscribes.

    Its sections are public: ``main`` (the deployment chosen under Profile), ``others``
    (watched ones, by name), ``section(name)`` and ``sections()``. The window's own
    ``set_status``/``set_details``... feed ``main``; what a section shows is read from it."""

    reconnectRequested = Signal()
    # "Reconnect now" in a watched deployment's section: its name.
    deploymentReconnectRequested = Signal(object)

    def __init__(
        self,
        adapter: MonitorAdapter | None,
        icons: IconCache,
        clock: Callable[[], datetime] = utcnow,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.icons = icons
        self.clock = clock
        self.adapter = adapter
        self.setWindowTitle("StatBus status: details")
        self.setAccessibleName("StatBus status details")
        self.resize(640, 600)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.scroll_area = QScrollArea()
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        inner = QWidget()
        self.list = QVBoxLayout(inner)
        self.list.setContentsMargins(10, 10, 10, 10)
        self.list.setSpacing(14)
        status = adapter.status if adapter is not None else Status(State.CONNECTING)
        self.main = self._section(adapter.want_details if adapter else None, status, None)
        self.list.addWidget(self.main)
        self.list.addStretch(1)
        self.scroll_area.setWidget(inner)
        outer.addWidget(self.scroll_area)
        self.others: dict[str, DeploymentSection] = {}
        self._rules: list[QFrame] = []
        self.focused: DeploymentSection | None = None  # the section a notice pointed at

    def _section(
        self, want: Callable[[bool], None] | None, status: Status, name: str | None
    ) -> DeploymentSection:
        section = DeploymentSection(want, status, self.clock, name)
        section.revealRequested.connect(self._reveal)
        section.reconnectRequested.connect(self._reconnect)
        return section

    def _reconnect(self, section: object) -> None:
        if section is self.main:
            self.reconnectRequested.emit()
        elif isinstance(section, DeploymentSection):
            self.deploymentReconnectRequested.emit(section.name)

    def _reveal(self, widget: object) -> None:
        if isinstance(widget, QWidget):
            self.scroll_area.ensureWidgetVisible(widget, 0, 40)

    # -- the deployments listed ---------------------------------------------------------------
    def set_deployments(
        self, main_name: str | None, others: Sequence[tuple[str, Callable[[bool], None], Status]]
    ) -> None:
        """List ``others`` (name, its details subscription, its Status) after the main
        deployment; with none, the window shows the main one alone and unnamed."""
        names = [n for n, _w, _s in others]
        if names == list(self.others) and (self.main.name is None) == (not names):
            return
        if self.focused is not None and self.focused is not self.main:
            self.focused = None
        for section in self.others.values():
            section.subscribe(False)
            self.list.removeWidget(section)
            section.deleteLater()
        for rule in self._rules:
            self.list.removeWidget(rule)
            rule.deleteLater()
        self.others, self._rules = {}, []
        self.main.name = (main_name or "this database") if names else None
        self.main._render()
        for name, want, status in others:
            rule = QFrame()
            rule.setFrameShape(QFrame.Shape.HLine)
            rule.setFrameShadow(QFrame.Shadow.Sunken)
            section = self._section(want, status, name)
            self.list.insertWidget(self.list.count() - 1, rule)
            self.list.insertWidget(self.list.count() - 1, section)
            self._rules.append(rule)
            self.others[name] = section
            section.subscribe(self.isVisible())

    def set_deployment_status(self, name: str, status: Status) -> None:
        section = self.others.get(name)
        if section is not None:
            section.set_status(status)

    def set_deployment_details(self, name: str, details: Details) -> None:
        section = self.others.get(name)
        if section is not None:
            section.set_details(details)

    def set_deployment_day(self, name: str, day: DayView) -> None:
        section = self.others.get(name)
        if section is not None:
            section.set_day(day)

    def sections(self) -> list[DeploymentSection]:
        return [self.main, *self.others.values()]

    def section(self, name: str | None) -> DeploymentSection:
        """The section of deployment ``name`` (the main one for None or an unknown name)."""
        return self.others.get(name, self.main) if name is not None else self.main

    def focus_deployment(self, name: str | None, job_id: int | None = None) -> None:
        """Bring one deployment's section (and, given, one of its jobs) into view: a
        notice's "Show details"."""
        section = self.section(name)
        self.focused = section
        # Several deployments listed: a bar on the left of the one a notice pointed at.
        bar = palette.focus_css("deployment", palette.dark_window(self), side=True)
        for s in self.sections():
            _style(s, bar if s is section and self.others else "")
        if job_id is not None:
            section.focus_job(job_id)
        # After the layout settles (a section just shown has no geometry yet).
        self._reveal(section)
        QTimer.singleShot(0, section, lambda: self._reveal(section.headline))

    # -- subscription follows visibility -----------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        for section in self.sections():
            section.subscribe(True)

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        self._unsubscribe()

    def closeEvent(self, event: QCloseEvent) -> None:
        # Closing only hides: the app lives in the tray.
        self._unsubscribe()
        super().closeEvent(event)

    def _unsubscribe(self) -> None:
        for section in self.sections():
            section.subscribe(False)

    # -- the main deployment (the one chosen under Profile) -----------------------------------
    def set_adapter(self, adapter: MonitorAdapter | None) -> None:
        """A new monitor (restart, other profile): move the details subscription to it."""
        if adapter is self.adapter:
            return
        self.adapter = adapter
        self.main.set_want(adapter.want_details if adapter else None, self.isVisible())

    def set_status(self, status: Status) -> None:
        self.main.set_status(status)

    def set_details(self, details: Details) -> None:
        self.main.set_details(details)

    def set_day(self, day: DayView) -> None:
        self.main.set_day(day)

    def set_me(self, me: int | None) -> None:
        self.main.set_me(me)

    def focus_job(self, job_id: int) -> None:
        self.main.focus_job(job_id)

    @property
    def status(self) -> Status:
        return self.main.status

    @property
    def details(self) -> Details | None:
        return self.main.details


def _review_names(details: Details | None) -> str | None:
    """The jobs waiting for review, as a held job's row names them ("lu_2026")."""
    if details is None:
        return None
    names = [j.slug or f"job {j.id}" for j in details.import_jobs
             if j.state == "waiting_for_review"]
    return ", ".join(names) or None


def _fill(table: QTableWidget, rows: Sequence[Sequence[str]]) -> None:
    """Update a table in place: items are reused, only the row count changes."""
    table.setUpdatesEnabled(False)
    try:
        table.setRowCount(len(rows))
        for r, values in enumerate(rows):
            for c, value in enumerate(values):
                item = table.item(r, c)
                if item is None:
                    item = QTableWidgetItem(value)
                    if c > 0 and value.replace(",", "").isdigit():
                        item.setTextAlignment(
                            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                        )
                    table.setItem(r, c, item)
                elif item.text() != value:
                    item.setText(value)
    finally:
        table.setUpdatesEnabled(True)
