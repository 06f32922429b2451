"""The one check every attack's input passes before the attack runs: an update that carries nothing to attack.

An update whose every trained entry is zero (a one-class head's cross-entropy gradient, a fully pruned update, a
client that did not move) holds no information about the images, and one with NaN or inf entries cannot be matched.
Any reconstruction from such an update is the attack's own starting point, so it must not be scored as a result:
:meth:`fedleak.attacks.base.Attack.__call__` turns it into a ``failed`` reconstruction with this module's reason.
"""

from __future__ import annotations

import torch

from fedleak.types import Observation


def update_problem(observation: Observation) -> str | None:
    """None when the update can be attacked, else a one-line reason (non-finite entries, or zero everywhere)."""
    for name, value in observation.update.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            return f"the update is not finite (NaN or inf in {name}): nothing to reconstruct from"
    try:
        entries = observation.gradient() if observation.kind != "gradient" else observation.update
    except Exception:  # noqa: BLE001 — a malformed update is the attack's to report, not this check's
        return None
    moving = [v for v in entries.values() if v.is_floating_point()]
    if moving and not any(bool(v.detach().ne(0).any()) for v in moving):
        what = "gradient" if observation.kind == "gradient" else "weight change"
        return (f"the update's {what} is zero in every layer (e.g. a one-class head, or everything pruned): it "
                "carries nothing about the images")
    return None
