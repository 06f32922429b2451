"""Defaults shared by the command line, the simulation, the deployment launcher and the reports: each set here once."""

from __future__ import annotations

import time
from pathlib import Path

#: PSNR (dB) at or above which a reconstructed image counts as a success, unless ``output.success_psnr`` says else.
DEFAULT_SUCCESS_PSNR = 30.0

#: Where runs go when neither ``--out`` nor ``output.dir`` names a folder.
RUNS_ROOT = Path("runs")


def default_run_dir(name: str | None, root: Path = RUNS_ROOT) -> Path:
    """``runs/<name>-<timestamp>``: a new folder per run, so nothing already written is overwritten."""
    return root / f"{name or 'scenario'}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_dir_for(out: Path | None, output_dir: str | None, name: str | None) -> Path:
    """The run directory: ``--out`` first, then the scenario's ``output.dir``, then :func:`default_run_dir`."""
    if out is not None:
        return Path(out)
    return Path(output_dir) if output_dir else default_run_dir(name)
