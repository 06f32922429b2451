"""A pool of Ray actors that run attacks beside Flower's simulation (which owns the Ray cluster).

Facts this design follows (measured with Flower 1.41 and Ray 2.55):
- Flower's client pool reserves every CPU it can fit, so an attacker actor that asks for a CPU never starts: actors
  ask for ``num_cpus=0`` and, with a GPU, a fractional ``num_gpus`` (clients stay on ``num_gpus=0``).
- Creating actors in the ServerApp before the first replies arrived crashed runs: actors are created lazily, on the
  first ``submit``.
- Flower calls ``ray.shutdown()`` when the simulation ends: the server must ``drain()`` before its main returns.
- A large payload costs per call; the round's global weights are ``ray.put`` once and passed by reference.

Each actor runs one attack at a time and takes jobs only once it has started (imported torch and the attacks); jobs
beyond the idle actors wait here, so the timeout counts from the moment a job starts on a ready actor. A job past
``timeout_s`` has its actor killed and replaced, and becomes a failed row.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import time
from typing import Any

import ray
import torch

from fedleak.config.schema import AttackConfig
from fedleak.devices import resolve_device
from fedleak.loopback import ray_init_loopback_args
from fedleak.runtime.executor import AttackExecutor, AttackFuture, C, job_seed, run_one
from fedleak.types import Observation, Reconstruction

#: Attacker actors are named ``fedleak-attacker-<driver pid>-<n>``.
ACTOR_PREFIX = "fedleak-attacker-"


class AttackWorker:
    """The actor: rebuilds the observation around the shared weights and runs one attack."""

    def __init__(self, threads: int):
        # Clients train on the same cores; one thread per attacker keeps the machine from oversubscribing.
        torch.set_num_threads(threads)

    def run(
        self, observation: Observation, weights: dict[str, torch.Tensor], attack: AttackConfig, device: str, seed: int
    ) -> Reconstruction:
        result = run_one(dataclasses.replace(observation, global_weights=weights), attack, device, seed)
        # Where the attack ran, for the run's diagnostics (on a shared cluster: which cluster and node).
        context = ray.get_runtime_context()
        result.diagnostics.setdefault("ray_cluster", context.gcs_address)
        result.diagnostics.setdefault("ray_node", context.get_node_id())
        return result

    def ready(self) -> bool:
        return True


@dataclasses.dataclass
class _Job:
    future: AttackFuture[Any]
    observation: Observation
    attack: AttackConfig
    seed: int
    weights: Any  # an ObjectRef to the round's global weights


@dataclasses.dataclass
class _Running:
    job: _Job
    actor_index: int
    started: float


class RayPoolExecutor(AttackExecutor[C]):
    """Runs attacks on ``workers`` Ray actors; joins the running Ray cluster or starts a private one.

    Args:
        workers: number of attacker actors.
        threads: torch threads per actor.
        ray_init_args: passed to ``ray.init`` when no cluster runs yet (standalone use, benchmarks).
        resource: a custom Ray resource each actor asks one unit of (None: none); declared ``workers`` times
            when this pool starts Ray itself.
        gpus_per_attack: each actor's GPU share when CUDA is used (default ``1 / workers``).
        (others: see :class:`AttackExecutor`).
    """

    def __init__(
        self, device: str = "auto", seed: int = 0, timeout_s: float = 600.0, max_in_flight: int = 8,
        workers: int = 2, threads: int = 1, ray_init_args: dict[str, Any] | None = None,
        resource: str | None = None, gpus_per_attack: float | None = None,
    ):
        super().__init__(device=device, seed=seed, timeout_s=timeout_s, max_in_flight=max_in_flight)
        self.workers = workers
        self.threads = threads
        self.ray_init_args = ray_init_args or {}
        self.resource = resource
        self.gpus_per_attack = gpus_per_attack
        self._device = resolve_device(device)
        self._actors: list[Any] = []
        self._idle: collections.deque[int] = collections.deque()
        self._starting: dict[Any, int] = {}  # ready() reference → actor index, until the actor has started
        self._queue: collections.deque[_Job] = collections.deque()
        self._running: dict[Any, _Running] = {}
        self._weights_round: Any = None
        self._weights_ref: Any = None
        self._owns_ray = False
        self._start_failures = 0
        self._launched = 0
        self._broken: str | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    def _start(self) -> None:
        if self._actors:
            return
        if not ray.is_initialized():
            own = {"logging_level": "ERROR", "log_to_driver": False}
            if self.resource and "address" not in self.ray_init_args:
                # A Ray of our own offers the attackers' resource; a cluster's nodes declare theirs themselves.
                own["resources"] = {self.resource: self.workers}
            # A Ray of our own stays on 127.0.0.1 (Ray otherwise listens on every interface).
            own.update(ray_init_loopback_args(self.ray_init_args))
            ray.init(**{**own, **self.ray_init_args})
            self._owns_ray = True
        self._actors = [None] * self.workers
        for index in range(self.workers):
            self._launch_actor(index)

    def _launch_actor(self, index: int) -> None:
        gpu_share = (self.gpus_per_attack or 1.0 / self.workers) if self._device.startswith("cuda") else 0
        resources = {self.resource: 1} if self.resource else None
        actor_cls = ray.remote(num_cpus=0, num_gpus=gpu_share, resources=resources, max_restarts=0)(AttackWorker)
        # A name makes the attackers visible on a shared cluster (``ray.util.list_named_actors``); unique per
        # launch, since a replaced actor's name may not be free yet.
        self._launched += 1
        actor = actor_cls.options(name=f"{ACTOR_PREFIX}{os.getpid()}-{self._launched}").remote(self.threads)
        self._actors[index] = actor
        self._starting[actor.ready.remote()] = index

    def close(self) -> None:
        for actor in self._actors:
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 — Ray may already be shut down (Ctrl-C); the actor is gone then
                pass
        self._actors, self._running, self._starting = [], {}, {}
        self._idle.clear()
        self._queue.clear()
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
        self._owns_ray = False

    # -- submission ------------------------------------------------------------------------------------------
    def submit(self, observation: Observation, attack: AttackConfig, context: C) -> AttackFuture[C]:
        self._start()
        future = AttackFuture(attack.name, context)
        weights = self._shared_weights(observation)
        light = dataclasses.replace(observation, global_weights={})
        self._queue.append(_Job(future, light, attack, job_seed(self.seed, attack.name, observation), weights))
        self._wait_some(max_wait=0.0)
        while self.pending >= self.max_in_flight:
            self._wait_some(max_wait=1.0)
        return future

    def _shared_weights(self, observation: Observation) -> Any:
        # Every client of a round received the same global model, so one object-store copy per round suffices.
        key = observation.metadata.round
        if key is None or key != self._weights_round:
            self._weights_ref = ray.put(observation.global_weights)
            self._weights_round = key
        return self._weights_ref

    @property
    def pending(self) -> int:
        return len(self._queue) + len(self._running)

    # -- progress --------------------------------------------------------------------------------------------
    def _pump(self) -> None:
        """Start queued jobs on idle actors."""
        while self._broken and self._queue:
            self._finish(self._queue.popleft().future, Reconstruction.failed(self._broken))
        while self._queue and self._idle:
            job, index = self._queue.popleft(), self._idle.popleft()
            ref = self._actors[index].run.remote(job.observation, job.weights, job.attack, self._device, job.seed)
            self._running[ref] = _Running(job, index, time.monotonic())

    def _wait_some(self, max_wait: float) -> None:
        """Collect finished jobs and started actors (waiting up to ``max_wait`` s for one), stop overdue jobs,
        start queued ones."""
        watched = [*self._running, *self._starting]
        if watched:
            wait = max_wait
            if self._running:
                next_deadline = min(r.started + self.timeout_s for r in self._running.values())
                wait = max(0.0, min(max_wait, next_deadline - time.monotonic()))
            ready, rest = ray.wait(watched, num_returns=1, timeout=wait)
            if ready and rest:
                # Collect everything else that finished meanwhile, without waiting.
                ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
            for ref in ready:
                if ref in self._starting:
                    self._actor_started(ref)
                else:
                    self._finish_ref(ref)
            self._stop_overdue()
        self._pump()

    def _actor_started(self, ref: Any) -> None:
        index = self._starting.pop(ref)
        try:
            ray.get(ref)
        except Exception as exc:  # noqa: BLE001 — a worker that cannot start is replaced, a few times
            self._start_failures += 1
            if self._start_failures > 3 * self.workers:
                # Nothing will ever run: every job, queued now or later, fails instead of hanging the run.
                self._broken = f"attack worker cannot start: {type(exc).__name__}: {exc}"
                return
            self._launch_actor(index)
            return
        self._idle.append(index)

    def _finish_ref(self, ref: Any) -> None:
        running = self._running.pop(ref)
        try:
            result = ray.get(ref)
            self._idle.append(running.actor_index)
        except Exception as exc:  # noqa: BLE001 — a dead worker is a failed row; replace the worker
            result = Reconstruction.failed(f"worker error: {type(exc).__name__}: {exc}",
                                           seconds=time.monotonic() - running.started)
            self._replace_actor(running.actor_index)
        self._finish(running.job.future, result)

    def _stop_overdue(self) -> None:
        now = time.monotonic()
        for ref, running in list(self._running.items()):
            if now - running.started > self.timeout_s:
                del self._running[ref]
                self._replace_actor(running.actor_index)
                self._finish(running.job.future, Reconstruction.failed(
                    f"timeout: stopped after {now - running.started:.1f} s, limit {self.timeout_s:g} s",
                    seconds=now - running.started))

    def _replace_actor(self, index: int) -> None:
        ray.kill(self._actors[index])
        self._launch_actor(index)

    def _collect(self, block: bool) -> None:
        self._wait_some(max_wait=0.0)
        while block and self.pending:
            self._wait_some(max_wait=1.0)
