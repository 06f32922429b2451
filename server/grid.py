"""A Grid wrapper the run can stop: Ctrl-C must end the ServerApp thread, which Flower cannot interrupt.

Flower's ServerApp runs in a non-daemon thread that waits for nodes (``sample_nodes`` loops until enough connect)
and for replies (``send_and_receive`` polls until its timeout, an hour by default). After Ctrl-C the simulation
engine stops, nothing ever replies, and the process would wait for that thread forever. This wrapper polls like
Flower's in-memory grid but checks a stop event first, so a stopped run ends within one poll interval.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from flwr.app import Message


class RunStopped(RuntimeError):
    """Raised in the ServerApp thread once the run was stopped (Ctrl-C)."""


class StoppableGrid:
    """Delegates to ``grid``; ``get_node_ids`` and ``send_and_receive`` give up once ``stop`` is set."""

    def __init__(self, grid: Any, stop: threading.Event, poll_s: float | None = None):
        self._grid = grid
        self._stop = stop
        self._poll_s = poll_s if poll_s is not None else float(getattr(grid, "pull_interval", 0.1))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def _check(self) -> None:
        if self._stop.is_set():
            raise RunStopped("the run was stopped")

    def get_node_ids(self) -> Iterable[int]:
        self._check()
        return self._grid.get_node_ids()

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        self._check()
        waiting = set(self._grid.push_messages(messages))
        end = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while waiting and (end is None or time.monotonic() < end):
            self._check()
            received = list(self._grid.pull_messages(waiting))
            replies.extend(received)
            waiting -= {message.metadata.reply_to_message_id for message in received}
            if waiting:
                time.sleep(self._poll_s)
        return replies
