"""The Ray pool's own bookkeeping: a job past its time limit and a worker that dies are failed rows, the worker is
replaced and the next job runs; workers that can never start fail every job instead of hanging the run.

Ray itself is replaced by a small in-memory stand-in (``FakeRay``) with the calls the pool makes; the pool's real
behaviour on Ray is covered by the simulation tests.
"""

from __future__ import annotations

import time

import pytest
import torch

from fedleak.config.schema import AttackConfig
from fedleak.runtime import ray_pool
from fedleak.types import ModelSpec, Observation, Reconstruction, ThreatModel

SPEC = ModelSpec("lenet", in_channels=1, image_size=28, num_classes=10)


class Ref:
    """An object reference: done with a value, done with an error, or never done."""

    def __init__(self, value=None, error: Exception | None = None, done: bool = True):
        self.value, self.error, self.done = value, error, done


class FakeActor:
    def __init__(self, ray: FakeRay, behaviour: str):
        self.ray, self.behaviour = ray, behaviour
        self.ready = self.Method(lambda: Ref(error=RuntimeError("no start")) if behaviour == "no-start" else Ref(True))
        self.run = self.Method(self._run)

    class Method:
        def __init__(self, call):
            self.remote = call

    def _run(self, observation, weights, attack, device, seed) -> Ref:
        self.ray.runs.append(self.behaviour)
        if self.behaviour == "hang":
            return Ref(done=False)
        if self.behaviour == "die":
            return Ref(error=RuntimeError("actor died"))
        return Ref(Reconstruction(images=None, diagnostics={"ran_on": self.behaviour}))


class FakeRay:
    """The calls RayPoolExecutor makes; each new actor takes the next behaviour from ``behaviours``."""

    def __init__(self, behaviours: list[str]):
        self.behaviours = list(behaviours)
        self.killed: list[FakeActor] = []
        self.runs: list[str] = []

    def is_initialized(self) -> bool:
        return True

    def remote(self, **_options):
        fake = self

        class ActorClass:
            @staticmethod
            def options(**_named):
                return ActorClass

            @staticmethod
            def remote(_threads):
                return FakeActor(fake, fake.behaviours.pop(0) if fake.behaviours else "ok")

        return lambda _cls: ActorClass

    def put(self, value):
        return Ref(value)

    def wait(self, refs, num_returns=1, timeout=None):
        done = [r for r in refs if r.done]
        if not done and timeout:
            time.sleep(timeout)
        return done[: max(num_returns, len(done))], [r for r in refs if not r.done]

    def get(self, ref):
        if ref.error is not None:
            raise ref.error
        return ref.value

    def kill(self, actor):
        self.killed.append(actor)


def observation(client: int) -> Observation:
    weights = {k: v.detach() for k, v in SPEC.build().state_dict().items()}
    return Observation(SPEC, weights, {k: torch.zeros_like(v) for k, v in weights.items()}, "gradient",
                       ThreatModel(), metadata={"round": 1, "client": client, "batch_size": 1})


def run_jobs(monkeypatch, behaviours: list[str], jobs: int, timeout_s: float = 0.3):
    fake = FakeRay(behaviours)
    monkeypatch.setattr(ray_pool, "ray", fake)
    pool = ray_pool.RayPoolExecutor(device="cpu", workers=1, timeout_s=timeout_s)
    for client in range(jobs):
        pool.submit(observation(client), AttackConfig(name="idlg"), context=client)
    outcomes = sorted(pool.drain(), key=lambda o: o.context)
    return fake, outcomes


def test_a_job_past_its_limit_is_a_timeout_row_and_its_worker_is_replaced(monkeypatch):
    fake, outcomes = run_jobs(monkeypatch, ["hang", "ok"], jobs=2)
    first, second = (o.reconstruction for o in outcomes)
    assert first.status == "failed" and first.reason.startswith("timeout: stopped after")
    assert first.seconds >= 0.3
    assert [a.behaviour for a in fake.killed] == ["hang"]
    assert second.status == "ok" and second.diagnostics["ran_on"] == "ok"  # on the replacement
    assert [o.context for o in outcomes] == [0, 1]


def test_a_worker_that_dies_is_a_failed_row_and_is_replaced(monkeypatch):
    fake, outcomes = run_jobs(monkeypatch, ["die", "ok"], jobs=2)
    first, second = (o.reconstruction for o in outcomes)
    assert first.status == "failed" and first.reason == "worker error: RuntimeError: actor died"
    assert [a.behaviour for a in fake.killed] == ["die"]
    assert second.status == "ok" and fake.runs == ["die", "ok"]


def test_workers_that_never_start_fail_every_job_instead_of_hanging(monkeypatch):
    fake, outcomes = run_jobs(monkeypatch, ["no-start"] * 10, jobs=3)
    assert len(outcomes) == 3 and fake.runs == []
    assert all(o.reconstruction.reason.startswith("attack worker cannot start: RuntimeError") for o in outcomes)
    assert len(fake.behaviours) == 10 - 4  # the first start and 3 × workers replacements, then it gives up


@pytest.mark.parametrize("behaviour", ["hang", "die"])
def test_the_pool_keeps_no_job_after_a_failure(monkeypatch, behaviour):
    _, outcomes = run_jobs(monkeypatch, [behaviour], jobs=1)
    assert len(outcomes) == 1 and outcomes[0].reconstruction.status == "failed"
