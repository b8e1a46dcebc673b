"""The one progress helper of the CLI: plain lines at least every interval when stderr is a log."""

from __future__ import annotations

import io
import time

from rich.console import Console

from hotpatch.cli import main
from hotpatch.cli._progress import INTERVAL, POLL, Progress, elapsed_text


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _log_progress(clock: FakeClock, **kw) -> tuple[Progress, io.StringIO]:
    log = io.StringIO()
    console = Console(file=log)  # a StringIO is not a terminal, as a log file or a cluster job's stderr
    return Progress(console, "train", clock=clock, heartbeat=False, **kw), log


def _lines(log: io.StringIO) -> list[str]:
    return log.getvalue().splitlines()


def test_elapsed_text():
    assert elapsed_text(5.9) == "0m05s"
    assert elapsed_text(65.2) == "1m05s"
    assert elapsed_text(3725) == "1h02m05s"


def test_a_log_gets_a_line_when_a_task_starts_every_interval_and_when_it_ends():
    clock = FakeClock()
    progress, log = _log_progress(clock, interval=30.0)
    with progress:
        progress.update("epoch 1/2", 1, 100, "loss 0.5000")
        for step in range(2, 100):  # one step per second: lines only every 30 s
            clock.now += 1.0
            progress.update("epoch 1/2", step, 100, "loss 0.5000")
        clock.now += 1.0
        progress.update("epoch 1/2", 100, 100, "loss 0.2500")
    assert _lines(log) == [
        "hotpatch train: epoch 1/2 1/100 (1%) loss 0.5000, 0m00s",
        "hotpatch train: epoch 1/2 31/100 (31%) loss 0.5000, 0m30s",
        "hotpatch train: epoch 1/2 61/100 (61%) loss 0.5000, 1m00s",
        "hotpatch train: epoch 1/2 91/100 (91%) loss 0.5000, 1m30s",
        "hotpatch train: epoch 1/2 100/100 (100%) loss 0.2500, 1m39s",
    ]


def test_the_heartbeat_repeats_the_last_state_when_updates_stop():
    clock = FakeClock()
    progress, log = _log_progress(clock, interval=30.0)
    with progress:
        progress.status("loading data")
        clock.now += 29.0
        progress.tick()  # not yet
        clock.now += 1.0
        progress.tick()
        clock.now += 10.0
        progress.tick()  # 10 s after the last line
        clock.now += 20.0
        progress.tick()
    assert _lines(log) == ["hotpatch train: loading data, 0m00s", "hotpatch train: loading data, 0m30s",
                           "hotpatch train: loading data, 1m00s"]


def test_the_heartbeat_thread_writes_within_a_second_of_the_interval_passing():
    """The thread itself (not only ``tick``): once the interval has passed, the next line comes at its
    next poll, within about a second, so a log is silent for at most INTERVAL + POLL <= 30 s."""
    assert INTERVAL + POLL <= 30.0
    clock, log = FakeClock(), io.StringIO()
    with Progress(Console(file=log), "train", clock=clock) as progress:  # a log: the heartbeat thread runs
        progress.status("loading data")
        clock.now += INTERVAL
        start = time.monotonic()
        while len(_lines(log)) < 2 and time.monotonic() - start < 5.0:
            time.sleep(0.02)
        waited = time.monotonic() - start
    assert len(_lines(log)) == 2, f"no heartbeat line {waited:.1f} s after the interval passed"
    assert waited < 3.0  # one poll (1 s) plus scheduling on a busy machine
    assert _lines(log)[1] == f"hotpatch train: loading data, {elapsed_text(INTERVAL)}"


def test_a_new_task_prints_at_once_and_quiet_prints_nothing():
    clock = FakeClock()
    progress, log = _log_progress(clock)
    with progress:
        progress.counter("evaluating original")(1, 4)
        clock.now += 2.0
        progress.counter("evaluating patched")(1, 4)
    assert [line.split(":", 1)[1] for line in _lines(log)] == [" evaluating original 1/4 (25%), 0m00s",
                                                                " evaluating patched 1/4 (25%), 0m02s"]
    with Progress(None, "eval", clock=clock) as quiet:
        quiet.update("x", 1, 2)
        quiet.status("y")
        quiet.tick()  # nothing to write to, nothing raised


def test_a_terminal_gets_a_rich_bar_not_lines():
    log = io.StringIO()
    console = Console(file=log, force_terminal=True)
    with Progress(console, "sweep", heartbeat=False) as progress:
        progress.status("loading")
        progress.update("sweep", 1, 3, "n=1 f=3")
        assert progress.phase is None and list(progress.tasks) == ["sweep"]
        assert progress.thread is None
    assert "hotpatch sweep:" not in log.getvalue()


def test_profile_with_stderr_in_a_log_prints_plain_progress_lines(capsys):
    rc = main(["profile", "mixste", "--frames", "9", "--set", "dim=16", "--set", "depth=2", "--set", "num_heads=2",
               "--repeats", "2", "--warmup", "0", "--counters", "paper"])
    err = capsys.readouterr().err
    assert rc == 0
    lines = [line for line in err.splitlines() if line.startswith("hotpatch profile: ")]
    assert lines[0].startswith("hotpatch profile: measuring (FLOPs, then timed forwards), ")
    assert lines[-1].startswith("hotpatch profile: timing forwards 2/2 (100%), ")


def test_the_heartbeat_thread_runs_only_while_a_log_command_does():
    log = io.StringIO()
    with Progress(Console(file=log), "profile") as progress:
        assert progress.thread is not None and progress.thread.is_alive()
    assert not progress.thread.is_alive()  # stopped and joined on exit, no wait for its next beat
    with Progress(Console(file=log, force_terminal=True), "profile") as progress:
        assert progress.thread is None  # a terminal has its bar
