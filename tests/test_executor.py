"""The in-process executor: outcomes carry the server's context back, failures become failed results."""

from __future__ import annotations

import torch

from fedleak.attacks import ATTACKS, Attack, register_attack
from fedleak.config.schema import AttackConfig
from fedleak.runtime import job_seed, make_executor
from fedleak.runtime.local import LocalExecutor
from fedleak.types import ModelSpec, Observation, Reconstruction, ThreatModel

SPEC = ModelSpec("lenet", in_channels=1, image_size=28, num_classes=10)

if "test_exec_noise" not in ATTACKS:

    @register_attack("test_exec_noise")
    class NoiseAttack(Attack):
        """Seeded noise of the right shape: enough to check plumbing, not an attack."""

        def reconstruct(self, observation: Observation) -> Reconstruction:
            g = torch.Generator().manual_seed(self.seed)
            b = observation.batch_size or 1
            return Reconstruction(images=torch.rand(b, 1, 28, 28, generator=g), diagnostics={"seed": self.seed})

    @register_attack("test_exec_raises")
    class RaisingAttack(Attack):
        def reconstruct(self, observation: Observation) -> Reconstruction:
            raise RuntimeError("attack crashed")

    @register_attack("test_exec_nan")
    class NanAttack(Attack):
        def reconstruct(self, observation: Observation) -> Reconstruction:
            return Reconstruction(images=torch.full((1, 1, 28, 28), float("nan")))


def _observation(round_: int = 1, client: int = 0, batch: int = 2) -> Observation:
    model = SPEC.build()
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    # Non-zero: a zero update fails before any attack runs (attacks/update_check.py).
    update = {k: torch.full_like(v, 0.01) for k, v in model.named_parameters()}
    return Observation(SPEC, weights, update, "gradient", ThreatModel(),
                       metadata={"round": round_, "client": client, "batch_size": batch})


def test_outcomes_return_the_context_untouched_in_order():
    executor = LocalExecutor(device="cpu", seed=3)
    contexts = [object(), object()]
    futures = [executor.submit(_observation(client=i), AttackConfig(name="test_exec_noise"), contexts[i])
               for i in range(2)]
    assert all(f.done() for f in futures)
    outcomes = executor.drain()
    assert [o.context for o in outcomes] == contexts
    assert [o.attack for o in outcomes] == ["test_exec_noise"] * 2
    assert outcomes[0].reconstruction.images.shape == (2, 1, 28, 28)
    assert executor.drain() == [] and executor.completed() == []  # each outcome is handed out once


def test_attack_failures_become_failed_results():
    executor = make_executor("local", device="cpu")
    executor.submit(_observation(), AttackConfig(name="test_exec_raises"), "ctx-a")
    executor.submit(_observation(), AttackConfig(name="test_exec_nan"), "ctx-b")
    executor.submit(_observation(), AttackConfig(name="test_exec_noise", params={"no_such": 1}), "ctx-c")
    raised, nan, bad_setup = (o.reconstruction for o in executor.completed())
    assert raised.status == "failed" and "attack crashed" in raised.reason
    assert nan.status == "failed" and "non-finite" in nan.reason
    assert bad_setup.status == "failed" and "no_such" in bad_setup.reason


def test_overlong_attack_is_recorded_as_timeout():
    executor = LocalExecutor(device="cpu", timeout_s=1e-12)
    future = executor.submit(_observation(), AttackConfig(name="test_exec_noise"), None)
    result = future.result().reconstruction
    assert result.status == "failed" and result.reason.startswith("timeout")
    assert result.images is None


def test_job_seed_is_stable_and_distinct_per_round_and_client():
    seeds = {job_seed(0, "dlg", _observation(r, c)) for r in (1, 2) for c in (0, 1)}
    assert len(seeds) == 4
    assert job_seed(0, "dlg", _observation(1, 0)) == job_seed(0, "dlg", _observation(1, 0))
    assert job_seed(0, "dlg", _observation(1, 0)) != job_seed(1, "dlg", _observation(1, 0))
    executor = LocalExecutor(device="cpu", seed=0)
    outcome = executor.submit(_observation(2, 1), AttackConfig(name="test_exec_noise"), None).result()
    assert outcome.reconstruction.diagnostics["seed"] == job_seed(0, "test_exec_noise", _observation(2, 1))
