"""One run per folder: a run claims its folder before it writes anything, atomically.

The claim is a file, ``.fedleak-run``, created with ``O_CREAT | O_EXCL`` (of two runs started together on one
folder, exactly one creates it) and held under an exclusive ``flock`` while the run lives. It stays after the run:
the folder then holds fedleak output and a new run is refused unless ``--force``, which first moves the old folder
aside to ``<folder>.old-<timestamp>`` (never mixing two runs' files) — and refuses even then while the old run still
holds its lock. Creating the claim is also the check that the folder is writable, before any work starts.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from fedleak.errors import UserError

CLAIM_FILE = ".fedleak-run"
#: Files and folders that only fedleak writes into a run or attack folder: any of them means "already used".
OUTPUTS = (CLAIM_FILE, "scenario.yaml", "leakage.csv", "rounds.csv", "diagnostics.jsonl", "report.html", "figures",
           "images", "frontier.csv", "frontier.png", "arms", "logs", "deploy_status.json", "checkpoints",
           "metrics.json", "target.png", "recon.png", "reconstruction.png", "history.png", "run.json", "images.csv",
           "membership.csv")

#: Open claim files of this process, by folder: their locks last as long as the process does.
_held: dict[Path, tuple[int, bool]] = {}


def fedleak_outputs(folder: Path) -> list[str]:
    """The fedleak outputs ``folder`` holds (links included, not followed)."""
    return [name for name in OUTPUTS if os.path.lexists(folder / name)]


def _in_progress(folder: Path) -> bool:
    """Whether a live run holds the claim of ``folder``."""
    try:
        fd = os.open(folder / CLAIM_FILE, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _move_aside(folder: Path, option: str) -> Path:
    if _in_progress(folder):
        raise UserError(f"{option} {folder}: a run in progress holds this folder; wait for it or choose another")
    aside = folder.with_name(f"{folder.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    suffix = 1
    while os.path.lexists(aside):
        aside = folder.with_name(f"{folder.name}.old-{time.strftime('%Y%m%d-%H%M%S')}-{suffix}")
        suffix += 1
    os.rename(folder, aside)
    return aside


def claim(folder: Path, *, option: str = "--out", force: bool = False, command: str = "") -> Path | None:
    """Claim ``folder`` for this process's run (created if needed); returns where ``force`` moved an earlier run,
    else None. Raises :class:`UserError` (one line) when the folder holds fedleak output and ``force`` is off, when
    another run holds it, or when it cannot be written.

    Whoever holds the claim file's lock owns the folder. A claim file alone, unlocked, is a claim whose run stopped
    before writing anything (e.g. at a data error): it is taken over."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{option} {folder}: exists and is not a folder; name a new or empty folder")
    created = not folder.exists()
    held = [name for name in fedleak_outputs(folder) if name != CLAIM_FILE] if folder.is_dir() else []
    if held and not force:
        raise UserError(f"{option} {folder}: already holds fedleak output ({', '.join(held)}); choose another "
                        "folder, or add --force to move it aside")
    aside = _move_aside(folder, option) if held else None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / CLAIM_FILE, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise UserError(f"{option} {folder}: cannot write there ({exc.strerror}); choose a writable folder") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise UserError(f"{option} {folder}: a run in progress holds this folder; wait for it or choose another "
                        "folder") from None
    # Another run may have come and gone between the first look and the lock: look again, now that we hold it.
    late = [name for name in fedleak_outputs(folder) if name != CLAIM_FILE]
    if late:
        os.close(fd)
        raise UserError(f"{option} {folder}: another run wrote {', '.join(late)} here a moment ago; choose another "
                        "folder")
    os.ftruncate(fd, 0)
    os.write(fd, (json.dumps({"pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                              "command": command}) + "\n").encode())
    _held[folder] = (fd, created)
    return aside


def release_if_unused(folder: Path) -> None:
    """Undo this process's claim of ``folder`` when the run wrote nothing there (it stopped at a bad value): the
    claim file goes, and the folder too if the claim created it and it is empty."""
    folder = Path(folder)
    entry = _held.pop(folder, None)
    if entry is None:
        return
    fd, created = entry
    try:
        if [name for name in os.listdir(folder) if name != CLAIM_FILE]:
            _held[folder] = entry  # the run wrote something: the claim stays with it
            return
        os.unlink(folder / CLAIM_FILE)
        if created:
            folder.rmdir()
    except OSError:
        pass
    finally:
        if folder not in _held:
            os.close(fd)
