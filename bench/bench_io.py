"""What every benchmark script does with its results file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json(path: Path | None, payload: Any) -> None:
    """Write ``payload`` as indented JSON to ``path`` (creating its folder) and say so; None writes nothing."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=float))
    print(f"wrote {path}")
