"""``fedleak reproduce``: the source papers' experiments, one entry each, with the paper's figure beside ours."""

from fedleak.drivers.reproduce import (
    architectures,  # noqa: F401  (registers its entry)
    hybrid_comparison,  # noqa: F401  (registers its entry)
    idlg_table,  # noqa: F401  (registers its entry)
    rconv_grid,  # noqa: F401  (registers its entry)
    thesis_batch_sizes,  # noqa: F401  (registers its entry)
    thesis_linreg,  # noqa: F401  (registers its entry)
)
from fedleak.drivers.reproduce.base import ENTRIES, Entry, Measured, PaperFigure, register_entry, reproduce, write_table

__all__ = ["ENTRIES", "Entry", "Measured", "PaperFigure", "register_entry", "reproduce", "write_table"]
