"""The in-process executor: each attack runs to completion inside ``submit``, on the caller's thread.

For tests and small runs: no worker processes, deterministic order, nothing to start. It cannot interrupt a running
attack, so the timeout is applied when the attack returns: one that took longer than ``timeout_s`` is recorded as
failed with reason ``timeout`` (the same row the Ray pool writes when it stops a job), and its images are dropped.
"""

from __future__ import annotations

from fedleak.config.schema import AttackConfig
from fedleak.devices import resolve_device
from fedleak.runtime.executor import AttackExecutor, AttackFuture, C, job_seed, run_one
from fedleak.types import Observation, Reconstruction


class LocalExecutor(AttackExecutor[C]):
    """Runs every attack synchronously in this process."""

    def __init__(self, device: str = "auto", seed: int = 0, timeout_s: float = 600.0, max_in_flight: int = 8):
        super().__init__(device=device, seed=seed, timeout_s=timeout_s, max_in_flight=max_in_flight)
        self._device = resolve_device(device)

    def submit(self, observation: Observation, attack: AttackConfig, context: C) -> AttackFuture[C]:
        future = AttackFuture(attack.name, context)
        result = run_one(observation, attack, self._device, job_seed(self.seed, attack.name, observation))
        if result.seconds > self.timeout_s:
            result = Reconstruction.failed(
                f"timeout: ran {result.seconds:.1f} s, limit {self.timeout_s:g} s", seconds=result.seconds
            )
        self._finish(future, result)
        return future

    @property
    def pending(self) -> int:
        return 0

    def _collect(self, block: bool) -> None:
        # Everything finished inside submit().
        return None
