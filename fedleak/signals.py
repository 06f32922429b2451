"""Signals end a run the way Ctrl-C does: SIGTERM becomes a KeyboardInterrupt in the main thread (so every
``finally`` runs: rows kept, report rebuilt), and what the run started is stopped afterwards.

Ray starts its GCS server, raylet and workers as children of the process that calls ``ray.init``; after an
interrupt the run ends its own children by pid (SIGTERM, then SIGKILL past a grace period), so none outlives the
command. Processes of a cluster the user named are not children of the run and are never touched.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: The signal that interrupted the run, for the one line the command prints (None: none yet).
received: list[str] = []


@contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt in the main thread, as SIGINT does; either signal also
    silences Flower's logger, whose message threads otherwise print a traceback for every client the interrupt
    cut off (the command says in one line what happened instead)."""
    flower = logging.getLogger("flwr")

    def handler(signum: int, frame: Any) -> None:
        received.append(signal.Signals(signum).name)
        quiet_flower()
        raise KeyboardInterrupt

    try:
        previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGTERM, signal.SIGINT)}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    was_disabled = flower.disabled
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        flower.disabled = was_disabled


def is_interrupt(exc: BaseException) -> bool:
    """Ctrl-C or SIGTERM, however it arrived: a KeyboardInterrupt, or the ``sys.exit(15)`` of the SIGTERM handler
    that ``ray.init`` installs when it runs in the main thread (it replaces ours). Records SIGTERM for the latter."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    if isinstance(exc, SystemExit) and exc.code == signal.SIGTERM:
        if not received or received[-1] != "SIGTERM":
            received.append("SIGTERM")
        return True
    return False


def quiet_flower() -> None:
    """Silence Flower's logger: after an interrupt its message threads print a traceback per client cut off."""
    logging.getLogger("flwr").disabled = True


def signal_name(default: str = "SIGINT") -> str:
    """The name of the signal that interrupted the run (SIGINT when no handler of ours saw it: Ctrl-C)."""
    return received[-1] if received else default


def _children_map() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def descendants(pid: int | None = None) -> list[int]:
    """Live descendants of ``pid`` (default: this process), children first."""
    tree, found, todo = _children_map(), [], [pid or os.getpid()]
    while todo:
        for child in tree.get(todo.pop(0), []):
            found.append(child)
            todo.append(child)
    return found


def stop_descendants(grace_s: float = 5.0) -> list[int]:
    """SIGTERM every descendant of this process, SIGKILL those still alive after ``grace_s``; returns the pids
    that needed SIGKILL. Linux only (reads /proc); elsewhere nothing is found."""
    pids = descendants()
    for pid in pids:
        _send(pid, signal.SIGTERM)
    # A killed parent's children move to init: follow the pids found first, not today's family tree.
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    stubborn = [pid for pid in pids if _alive(pid)]
    for pid in stubborn:
        _send(pid, signal.SIGKILL)
    return stubborn


def _alive(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except (OSError, IndexError):
        return False


def _send(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
