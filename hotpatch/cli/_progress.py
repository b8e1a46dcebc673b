"""Progress of the long commands on stderr: a rich bar on a terminal, plain lines in a log.

One :class:`Progress` serves every command (``profile``, ``train``, ``finetune``, ``sweep``,
``lift``, ``eval``). On a terminal it draws a rich bar per task. When stderr is not a terminal
(a log file, a cluster job) it prints plain lines instead::

    hotpatch train: epoch 2/5 30/120 (25%) loss 0.0123, 1m05s

one when a task starts or ends, and while it runs one every ``interval`` seconds at most; a
heartbeat thread repeats the last state when no update came for ``interval`` seconds (a long
forward, loading data, counting FLOPs), so a log never stays silent for longer than that.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

#: Seconds between plain progress lines (with the heartbeat's poll: a line at least every 30 s).
INTERVAL = 29.0
#: Seconds between two looks of the heartbeat thread at the time since the last line.
POLL = 1.0


def elapsed_text(seconds: float) -> str:
    """``65.2`` -> ``"1m05s"``; ``3725`` -> ``"1h02m05s"``."""
    s = int(seconds)
    h, m, s = s // 3600, s % 3600 // 60, s % 60
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Progress:
    """Progress of one command on ``console`` (a rich Console on stderr; None when quiet).

    ``update(task, done, total, detail)`` reports a counted task, ``status(text)`` a phase
    without counts. ``clock`` and ``heartbeat`` exist for tests (a fake time source, no thread).
    """

    def __init__(self, console: Any, command: str, *, interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic, heartbeat: bool = True,
                 transient: bool = True) -> None:
        self.console, self.command, self.interval, self.clock = console, command, interval, clock
        self.plain = console is not None and not console.is_terminal
        self.heartbeat, self.transient = heartbeat and self.plain, transient
        self.bar: Any = None
        self.tasks: dict[str, Any] = {}
        self.phase: Any = None  # the rich task of the current status (removed by the next report)
        self.state: tuple[str, int | None, int | None, str] | None = None
        self.start = self.last = 0.0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> Progress:
        self.start = self.last = self.clock()
        if self.console is None:
            return self
        if not self.plain:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as Bar

            self.bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=self.console,
                           transient=self.transient)
            self.bar.start()
        elif self.heartbeat:
            self.thread = threading.Thread(target=self._beat, name="hotpatch-progress", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        if self.bar is not None:
            self.bar.stop()

    # ------------------------------------------------------------------ reporting

    def update(self, task: str, done: int, total: int, detail: str = "") -> None:
        """``done`` of ``total`` steps of ``task`` (one bar or line per task name)."""
        if self.console is None:
            return
        if self.bar is not None:
            self._end_phase()
            if task not in self.tasks:
                self.tasks[task] = self.bar.add_task(task, total=total, detail=detail)
            self.bar.update(self.tasks[task], completed=done, total=total, detail=detail)
            return
        with self.lock:
            new = self.state is None or self.state[0] != task
            self.state = (task, done, total, detail)
            if new or done >= total or self.clock() - self.last >= self.interval:
                self._line()

    def status(self, text: str) -> None:
        """A phase without counts (``"counting FLOPs"``): a line in a log, a bar without a total on a terminal."""
        if self.console is None:
            return
        if self.bar is not None:
            self._end_phase()
            self.phase = self.bar.add_task(text, total=None, detail="")
            return
        with self.lock:
            self.state = (text, None, None, "")
            self._line()

    def counter(self, task: str) -> Callable[[int, int], None]:
        """``update`` as the ``progress(done, total)`` callback the library functions take."""
        return lambda done, total: self.update(task, done, total)

    def tick(self) -> None:
        """Repeat the last state if no line was printed for ``interval`` seconds (the heartbeat)."""
        with self.lock:
            if self.plain and self.clock() - self.last >= self.interval:
                self._line()

    # ------------------------------------------------------------------ internals

    def _end_phase(self) -> None:
        if self.phase is not None:
            self.bar.remove_task(self.phase)
            self.phase = None

    def _line(self) -> None:
        now = self.clock()
        self.last = now
        task, done, total, detail = self.state or ("working", None, None, "")
        count = ""
        if done is not None and total:
            count = f" {done}/{total} ({100 * done // total}%)"
        detail = f" {detail}" if detail else ""
        self.console.file.write(f"hotpatch {self.command}: {task}{count}{detail}, {elapsed_text(now - self.start)}\n")
        self.console.file.flush()

    def _beat(self) -> None:
        while not self.stop.wait(POLL):
            self.tick()
