"""Progress of a run that happens in another process (the deployment's ServerApp), read from its run directory:
rows in rounds.csv are rounds done, rows in leakage.csv attacks done. One line each time either grows."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from fedleak.server.progress import eta_text


def _rows(path: Path) -> int:
    """Data rows of a CSV written row by row (its header excluded); 0 while it does not exist."""
    try:
        with path.open("rb") as handle:
            return max(sum(1 for _ in handle) - 1, 0)
    except OSError:
        return 0


class RunFilesProgress:
    """Call it about twice a second; it says a line (``say``) when a round or an attack has finished."""

    def __init__(self, run_dir: Path, rounds: int, scheduled: int, say: Callable[[str], None]):
        self.run_dir, self.rounds, self.scheduled, self.say = Path(run_dir), rounds, scheduled, say
        self._seen = (0, 0)
        self._started = time.monotonic()

    def __call__(self) -> None:
        now = (_rows(self.run_dir / "rounds.csv"), _rows(self.run_dir / "leakage.csv"))
        if now == self._seen:
            return
        self._seen = now
        rounds, attacks = now
        eta = eta_text(time.monotonic() - self._started, rounds + attacks, self.rounds + self.scheduled)
        self.say(f"round {rounds}/{self.rounds} done · attacks {attacks}/{self.scheduled} done · {eta}")
