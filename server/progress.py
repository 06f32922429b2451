"""What the user sees while a run goes on: round, clients, attacks done out of those scheduled, and an estimate of
the time left.

A rich live bar on a terminal; plain one-line updates otherwise (CI logs, pipes), so logs stay readable. The bar
counts rounds and scheduled attacks as one unit each (attacks are most of a run's time) and the estimate is the
elapsed time per unit done, times the units left: rough while the first round trains, better once attacks finish.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def eta_text(elapsed: float, done: int, total: int) -> str:
    """``"ETA 1m05s"`` from the pace so far, or ``"ETA –"`` before anything is done."""
    if done <= 0 or total <= done:
        return "ETA –" if total > done else "ETA 0s"
    seconds = int(round(elapsed * (total - done) / done))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return "ETA " + (f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s")


class RunProgress:
    """Progress of one simulation. Thread-safe: the ServerApp thread reports, the main thread starts and stops.

    Args:
        rounds: number of training rounds.
        clients: number of clients per round.
        enabled: ``False`` prints nothing (tests, benchmarks).
        stream: where plain lines go (default stderr).
        scheduled: attacks the schedule runs in all (``fedleak.server.schedule.planned_attacks``); None: unknown.
    """

    def __init__(self, rounds: int, clients: int, enabled: bool = True, stream: TextIO | None = None,
                 scheduled: int | None = None):
        self.rounds, self.clients, self.enabled, self.scheduled = rounds, clients, enabled, scheduled
        self.stream = stream or sys.stderr
        self._started = time.monotonic()
        self._rounds_done = 0
        self.round = 0
        self.replied = 0
        self.submitted = self.done = self.failed = self.skipped = 0
        self._lock = threading.Lock()
        self._live = None
        self._task = None
        if enabled and self.stream.isatty():
            self._live = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), transient=False,
            )
            self._task = self._live.add_task("run", total=self._total(), detail="starting Flower")

    def __enter__(self) -> RunProgress:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._refresh()
            self._live.stop()

    def round_trained(self, server_round: int, replied: int) -> None:
        with self._lock:
            self.round, self.replied = server_round, replied
        self._emit(f"round {server_round}/{self.rounds}: {replied}/{self.clients} clients replied")

    def round_evaluated(self, server_round: int, loss: float | None, accuracy: float | None) -> None:
        quality = "" if accuracy is None else f", eval loss {loss:.3f}, accuracy {accuracy:.3f}"
        with self._lock:
            self._rounds_done += 1
        self._emit(f"round {server_round}/{self.rounds} done{quality}", advance=True)

    def _total(self) -> int:
        return self.rounds + (self.scheduled or 0)

    def _units_done(self) -> int:
        return self._rounds_done + self.done

    def attacks_submitted(self, count: int) -> None:
        with self._lock:
            self.submitted += count
        self._refresh()

    def attack_finished(self, status: str) -> None:
        """One attack's row was written: ``ok``, ``failed`` or ``skipped`` (not run, e.g. over its image cap)."""
        with self._lock:
            self.done += 1
            self.failed += status == "failed"
            self.skipped += status == "skipped"
        self._refresh(advance=True)

    def _attacks(self) -> str:
        skipped = f", {self.skipped} skipped" if self.skipped else ""
        of = f"/{self.scheduled}" if self.scheduled is not None else ""
        return f"{self.done}{of} done ({self.failed} failed{skipped}), {self.submitted - self.done} pending"

    def eta(self) -> str:
        return eta_text(time.monotonic() - self._started, self._units_done(), self._total())

    def message(self, text: str) -> None:
        self._emit(text)

    def _detail(self) -> str:
        return f"round {self.round}/{self.rounds} · clients {self.replied}/{self.clients} · attacks {self._attacks()}"

    def _refresh(self, advance: bool = False) -> None:
        if self._live is not None:
            self._live.update(self._task, advance=1 if advance else 0, detail=self._detail())

    def _emit(self, text: str, advance: bool = False) -> None:
        if not self.enabled:
            return
        if self._live is not None:
            self._live.update(self._task, advance=1 if advance else 0, detail=self._detail())
            return
        with self._lock:
            suffix = f" | attacks {self._attacks()} | {self.eta()}"
            print(text + suffix, file=self.stream, flush=True)
