"""The run folder is a fence: nothing fedleak writes or reads inside a run folder leaves it.

Two rules, checked here once for every writer and reader:

- A name that becomes a path component (the scenario's ``name``, an arm's name) is one plain folder name: letters,
  digits, ``_``, ``.``, ``-``, starting with a letter or digit; so no ``/``, no ``..``, no absolute path.
- No file or folder inside a run folder may be a symbolic link: a link could send a write (``report.html``,
  ``figures/``) over a file elsewhere, or a read (an image embedded in the report) to one. The run folder itself
  may be reached through a link: the user named it.

A link found is refused with one line naming it and where it points; nothing is followed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from fedleak.errors import UserError

#: A name that is used as one folder or file name.
FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def folder_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a folder (None when it can)."""
    if FOLDER_NAME.fullmatch(name):
        return None
    return (f"{name!r} names a folder: use 1 to 100 letters, digits, '_', '.', '-', starting with a letter or digit "
            "(no '/', no '..')")


def _link_problem(run_dir: Path, path: Path) -> str:
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return (f"run folder {run_dir}: {path.relative_to(run_dir)} is a symbolic link (to {target}); fedleak reads and "
            "writes only inside the run folder: remove the link")


def inside(run_dir: Path, relative: str | Path) -> Path:
    """``run_dir / relative`` after checking that no existing component below ``run_dir`` is a symbolic link and
    that the path stays inside ``run_dir``; raises :class:`UserError` otherwise."""
    run_dir = Path(run_dir)
    relative = Path(relative)
    if relative.is_absolute() or ".." in relative.parts:
        raise UserError(f"run folder {run_dir}: {relative} is not a path inside the run folder")
    path = run_dir
    for part in relative.parts:
        path = path / part
        if path.is_symlink():
            raise UserError(_link_problem(run_dir, path))
    return path


def check_tree(run_dir: Path) -> None:
    """Refuse a run folder that holds a symbolic link anywhere below it (walked without following links)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    for folder, dirs, files in os.walk(run_dir, followlinks=False):
        for name in (*dirs, *files):
            path = Path(folder, name)
            if path.is_symlink():
                raise UserError(_link_problem(run_dir, path))
