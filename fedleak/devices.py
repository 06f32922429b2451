"""Which torch device ``auto``, ``cpu`` or ``cuda`` means on this machine: one rule for every command."""

from __future__ import annotations

import torch

from fedleak.errors import UserError


def resolve_device(name: str, *, strict: bool = False) -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``; other names pass through. With ``strict``, asking for
    ``cuda`` where there is none is a user error (a command line); without, the attack that runs there will fail."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if strict and name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    return name
