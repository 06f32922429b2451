"""Run outputs: the append-only run directory (:class:`RunWriter`), image grids, figures and report.html."""

from fedleak.report.build import build_report
from fedleak.report.images import grid, save_grid
from fedleak.report.writer import RunWriter

__all__ = ["RunWriter", "build_report", "grid", "save_grid"]
