"""What the user sees while a run goes on: round, clients, attacks pending and done.

A rich live bar on a terminal; plain one-line updates otherwise (CI logs, pipes), so logs stay readable.
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO


class RunProgress:
    """Progress of one simulation. Thread-safe: the ServerApp thread reports, the main thread starts and stops.

    Args:
        rounds: number of training rounds.
        clients: number of clients per round.
        enabled: ``False`` prints nothing (tests, benchmarks).
        stream: where plain lines go (default stderr).
    """

    def __init__(self, rounds: int, clients: int, enabled: bool = True, stream: TextIO | None = None):
        self.rounds, self.clients, self.enabled = rounds, clients, enabled
        self.stream = stream or sys.stderr
        self.round = 0
        self.replied = 0
        self.submitted = self.done = self.failed = self.skipped = 0
        self._lock = threading.Lock()
        self._live = None
        self._task = None
        if enabled and self.stream.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._live = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(), transient=False,
            )
            self._task = self._live.add_task("rounds", total=rounds, detail="starting Flower")

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
        self._emit(f"round {server_round}/{self.rounds} done{quality}", advance=True)

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
        self._refresh()

    def _attacks(self) -> str:
        skipped = f", {self.skipped} skipped" if self.skipped else ""
        return f"{self.done} done ({self.failed} failed{skipped}), {self.submitted - self.done} pending"

    def message(self, text: str) -> None:
        self._emit(text)

    def _detail(self) -> str:
        return f"round {self.round}/{self.rounds} · clients {self.replied}/{self.clients} · attacks {self._attacks()}"

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._task, detail=self._detail())

    def _emit(self, text: str, advance: bool = False) -> None:
        if not self.enabled:
            return
        if self._live is not None:
            self._live.update(self._task, advance=1 if advance else 0, detail=self._detail())
            return
        with self._lock:
            suffix = f" | attacks {self._attacks()}"
            print(text + suffix, file=self.stream, flush=True)
