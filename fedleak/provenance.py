"""Where a run came from, written as ``run.json`` in every run directory so two runs can be told apart later.

The record holds fedleak's version and, in a git checkout, its commit (and whether the tree had uncommitted
changes); the SHA-256 of ``requirements.lock`` and whether the installed packages match it; the versions of Python,
torch, flwr, ray and opacus; the device; the command line; the seed; and the start and end times (UTC). It is
written when a run starts (``finished_at`` empty, ``status`` ``running``) and rewritten when it ends, so a run that
was killed is recognisable as one.

Library versions come from the installed distributions' metadata: reading them imports nothing.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

import fedleak
from fedleak.devices import resolve_device

RUN_FILE = "run.json"
LOCK_FILE = "requirements.lock"
#: The libraries whose versions decide what a run measures.
LIBRARIES = ("torch", "torchvision", "flwr", "ray", "opacus", "numpy")
#: The command line of this process, as the ``fedleak`` command saw it (None: called from Python).
_COMMAND: list[str] | None = None


def set_command(argv: list[str]) -> None:
    """Remember the command line this process was started with (called by the ``fedleak`` command)."""
    global _COMMAND
    _COMMAND = ["fedleak", *argv]


def current_command() -> list[str] | None:
    """The command line registered by :func:`set_command` (None when fedleak was called from Python)."""
    return list(_COMMAND) if _COMMAND else None


def version() -> str:
    """fedleak's installed version (the distribution's metadata; the package's own string when not installed)."""
    try:
        return metadata.version("fedleak")
    except metadata.PackageNotFoundError:
        return fedleak.__version__


def source_root() -> Path:
    """The folder above the ``fedleak`` package: the checkout's root in an editable install."""
    return Path(fedleak.__file__).resolve().parents[1]


def git_commit(root: Path | None = None) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the checkout fedleak runs from, or ``(None, None)`` outside a git checkout."""
    root = root or source_root()
    if not (root / ".git").exists():
        return None, None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return head or None, bool(status.strip())


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_facts(root: Path | None = None) -> dict[str, Any]:
    """The lock's SHA-256 and the installed packages that differ from it (empty: the environment is the lock)."""
    path = (root or source_root()) / LOCK_FILE
    if not path.is_file():
        return {"lock_sha256": None, "environment_matches_lock": None, "lock_differences": []}
    text = path.read_bytes()
    pinned = {}
    for line in text.decode("utf-8").splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, _, pin = line.strip().partition("==")
            pinned[_normalise(name)] = pin
    installed = {_normalise(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}
    installed.pop("fedleak", None)
    differences = sorted(f"{name}: lock {pinned.get(name, '-')}, installed {installed.get(name, '-')}"
                         for name in set(pinned) | set(installed) if pinned.get(name) != installed.get(name))
    return {"lock_sha256": hashlib.sha256(text).hexdigest(), "environment_matches_lock": not differences,
            "lock_differences": differences}


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_facts(requested: str) -> dict[str, Any]:
    """The device the scenario asked for, what it resolved to here, and the GPU's name when there is one."""
    # lazy (start-up): `fedleak --version` reads this module without loading torch

    resolved = resolve_device(requested)
    gpu = None
    if resolved.startswith("cuda"):
        # lazy (start-up): `fedleak --version` reads this module without loading torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    return {"requested": requested, "resolved": resolved, "gpu": gpu}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunRecord:
    """The contents of ``run.json``."""

    kind: str
    fedleak_version: str
    fedleak_commit: str | None
    fedleak_dirty: bool | None
    lock_sha256: str | None
    environment_matches_lock: bool | None
    lock_differences: list[str]
    versions: dict[str, str | None]
    platform: str
    device: dict[str, Any]
    command: list[str] | None
    seed: int | None
    started_at: str
    finished_at: str | None = None
    status: str = "running"
    extra: dict[str, Any] = field(default_factory=dict)

    def finished(self, status: str) -> RunRecord:
        return replace(self, finished_at=now(), status=status)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"


def collect(kind: str, *, seed: int | None, device: str, **extra: Any) -> RunRecord:
    """A record of this process for a run of ``kind`` (``simulate``, ``deploy``, ``attack``, ``arms``) starting now."""
    commit, dirty = git_commit()
    return RunRecord(kind=kind, fedleak_version=version(), fedleak_commit=commit, fedleak_dirty=dirty,
                     **lock_facts(), versions=library_versions(), platform=platform.platform(),
                     device=device_facts(device), command=current_command(), seed=seed,
                     started_at=now(), extra=dict(extra))


@contextmanager
def recorded(write: Callable[[RunRecord], Any], record: RunRecord) -> Iterator[dict[str, str]]:
    """Write ``record`` now and again when the block ends: ``interrupted`` (Ctrl-C), ``failed`` (an exception), or
    the status the block left in the dict it was given (``complete`` unless it set another)."""
    outcome = {"status": "complete"}
    write(record)
    try:
        yield outcome
    except KeyboardInterrupt:
        write(record.finished("interrupted"))
        raise
    except BaseException:
        write(record.finished("failed"))
        raise
    write(record.finished(outcome["status"]))


def read(run_dir: Path) -> dict[str, Any] | None:
    """``run.json`` of ``run_dir`` as a dict, or None when the run has none (written before fedleak recorded it)."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def with_command(run_dir: Path) -> RunRecord | None:
    """``run_dir``'s record with this process's command line where the writer (another process, such as the
    deployment's ServerApp) had none; None when there is no run.json or nothing to add."""
    data = read(run_dir)
    command = current_command()
    if data is None or data.get("command") is not None or command is None:
        return None
    return replace(RunRecord(**data), command=command)


def describe_version() -> str:
    """``fedleak --version``: the version, and the commit when running from a checkout."""
    commit, dirty = git_commit()
    where = f" (commit {commit[:12]}{', uncommitted changes' if dirty else ''})" if commit else ""
    return f"fedleak {version()}{where}, Python {platform.python_version()} ({sys.executable})"
