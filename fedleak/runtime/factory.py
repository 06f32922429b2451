"""``make_executor``: the one place that knows every executor, so the interface module imports none of them."""

from __future__ import annotations

from typing import Literal

from fedleak.runtime.executor import AttackExecutor
from fedleak.runtime.local import LocalExecutor


def make_executor(
    kind: Literal["local", "ray"], *, device: str = "auto", seed: int = 0, timeout_s: float = 600.0,
    max_in_flight: int = 8, workers: int = 2, resource: str | None = None, gpus_per_attack: float | None = None,
) -> AttackExecutor:
    """The executor for ``kind``: ``local`` runs attacks in this process, ``ray`` in a pool of Ray actors (each
    asking for one unit of ``resource`` and ``gpus_per_attack`` of a GPU, see fedleak/runtime/cluster.py)."""
    if kind == "local":
        return LocalExecutor(device=device, seed=seed, timeout_s=timeout_s, max_in_flight=max_in_flight)
    if kind == "ray":
        # Imported here so that a local run never imports Ray.
        # lazy (start-up): Ray takes seconds to import; only Ray runs need it
        from fedleak.runtime.ray_pool import RayPoolExecutor

        return RayPoolExecutor(
            device=device, seed=seed, timeout_s=timeout_s, max_in_flight=max_in_flight, workers=workers,
            resource=resource, gpus_per_attack=gpus_per_attack,
        )
    raise ValueError(f"unknown executor kind {kind!r}; choose 'local' or 'ray'")
