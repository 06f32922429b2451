"""The shared gradient-matching loop: recovery on tiny models, divergence and stall handling, local steps, options."""

from __future__ import annotations

import math

import pytest
import torch

from fedleak.attacks.matching import (
    MatchConfig,
    gradient_update_fn,
    local_steps_update_fn,
    match_gradients,
    reference_scale,
    update_distance,
)
from fedleak.attacks.matching_problem import matching_problem, random_init
from fedleak.metrics import psnr
from fedleak.observe import observe
from fedleak.training import batch_gradient, local_steps_update
from fedleak.types import ModelSpec, ThreatModel


def _victim(name: str, channels: int, size: int, batch: int, seed: int = 0):
    spec = ModelSpec(name, channels, size, 10)
    torch.manual_seed(seed)
    model = spec.build()
    generator = torch.Generator().manual_seed(seed + 100)
    images = torch.rand(batch, channels, size, size, generator=generator)
    labels = torch.arange(batch) * 3 % 10
    return spec, model, images, labels


def test_l2_matching_recovers_an_image_through_a_linear_model() -> None:
    _, model, images, labels = _victim("linreg", 1, 8, 1)
    target = batch_gradient(model, images, labels)
    config = MatchConfig(iterations=30, tolerance=1e-12)
    result = match_gradients(model, target, random_init((1, 1, 8, 8), "gray"), labels, config)
    assert result.status == "ok" and result.images.shape == images.shape
    assert float(psnr(result.images.clamp(0, 1), images)) > 60


def test_l2_matching_recovers_a_batch_on_a_tiny_sigmoid_lenet() -> None:
    _, model, images, labels = _victim("lenet", 1, 8, 2)
    target = batch_gradient(model, images, labels)
    config = MatchConfig(iterations=60, tolerance=1e-10)
    result = match_gradients(model, target, random_init((2, 1, 8, 8), "gray"), labels, config)
    assert result.images.shape == (2, 1, 8, 8)
    assert float(psnr(result.images.clamp(0, 1), images).min()) > 35


def test_soft_labels_are_learned_when_labels_are_not_given() -> None:
    _, model, images, labels = _victim("lenet", 1, 8, 1, seed=3)
    target = batch_gradient(model, images, labels)
    config = MatchConfig(iterations=60, tolerance=1e-10)
    result = match_gradients(model, target, random_init((1, 1, 8, 8), "normal"), None, config, num_classes=10)
    assert result.labels.shape == (1, 10) and torch.allclose(result.labels.sum(-1), torch.ones(1))
    assert int(result.labels.argmax()) == int(labels)
    assert float(psnr(result.images.clamp(0, 1), images)) > 30


def _nan_for_first_calls(update_fn, poisoned_calls: int):
    calls = {"n": 0}

    def update(images, labels):
        calls["n"] += 1
        out = update_fn(images, labels)
        if calls["n"] <= poisoned_calls:
            return {k: v * float("nan") for k, v in out.items()}
        return out

    return update


def test_a_diverged_attempt_is_abandoned_and_redrawn() -> None:
    _, model, images, labels = _victim("linreg", 1, 4, 1)
    target = batch_gradient(model, images, labels)
    update = _nan_for_first_calls(gradient_update_fn(model), poisoned_calls=3)
    # A fixed kernel choice: ``auto`` would spend the poisoned calls on timing evaluations.
    config = MatchConfig(iterations=20, max_redraws=3, conv_kernels="native")
    result = match_gradients(update, target, random_init((1, 1, 4, 4), "gray"), labels, config)
    assert result.status == "ok"
    assert result.attempts[0]["outcome"] == "diverged" and result.attempts[-1]["outcome"] == "ok"
    assert result.diverged >= 1 and math.isfinite(result.loss)


def test_all_attempts_diverging_gives_a_failed_result_with_a_reason() -> None:
    _, model, images, labels = _victim("linreg", 1, 4, 1)
    target = batch_gradient(model, images, labels)
    update = _nan_for_first_calls(gradient_update_fn(model), poisoned_calls=10**9)
    config = MatchConfig(iterations=5, restarts=1, max_redraws=2)
    result = match_gradients(update, target, random_init((1, 1, 4, 4), "gray"), labels, config)
    assert result.status == "failed" and result.images is None
    assert "all 3 attempts diverged" in result.reason and len(result.attempts) == 3


def test_a_stalled_attempt_is_redrawn_but_stays_a_candidate() -> None:
    _, model, images, labels = _victim("linreg", 1, 4, 1)
    target = batch_gradient(model, images, labels)
    # An impossible stall bar: every attempt stalls, the best finite one is still returned.
    config = MatchConfig(iterations=10, stall_check=1, stall_ratio=0.0, max_redraws=2)
    result = match_gradients(model, target, random_init((1, 1, 4, 4), "normal"), labels, config)
    assert [a["outcome"] for a in result.attempts] == ["stalled"] * 3
    assert result.status == "ok" and result.images is not None
    assert result.distance == min(a["loss"] for a in result.attempts)


def test_restarts_keep_the_attempt_with_the_lowest_distance_and_are_deterministic() -> None:
    _, model, images, labels = _victim("lenet", 1, 8, 1)
    target = batch_gradient(model, images, labels)
    config = MatchConfig(distance="cosine", optimizer="adam", lr=0.1, iterations=15, restarts=3,
                         signed_gradients=True, lr_schedule=True, parametrization="clamp", tv_weight=1e-3)
    runs = [
        match_gradients(model, target, random_init((1, 1, 8, 8), "uniform"), labels, config,
                        generator=torch.Generator().manual_seed(7))
        for _ in range(2)
    ]
    assert len(runs[0].attempts) == 3
    assert runs[0].distance == min(a["loss"] for a in runs[0].attempts)
    assert runs[0].diagnostics()["matching_loss"] == runs[0].distance
    assert torch.equal(runs[0].images, runs[1].images)
    assert 0 <= float(runs[0].images.min()) and float(runs[0].images.max()) <= 1


def test_early_stop_snapshots_filter_and_penalty() -> None:
    _, model, images, labels = _victim("linreg", 1, 4, 1)
    target = batch_gradient(model, images, labels)
    config = MatchConfig(iterations=200, tolerance=1e-6, snapshot_every=1)
    seen = []

    def penalty(x):
        seen.append(x.shape)
        return 0.0 * x.sum()

    result = match_gradients(model, target, random_init((1, 1, 4, 4), "gray"), labels, config,
                             param_filter=lambda name: name.endswith("weight"), extra_penalty=penalty)
    record = result.attempts[0]
    assert record["stop"].startswith("converged") and record["iterations"] < 200
    # One snapshot per L-BFGS iteration (one evaluation each with the fixed step) plus the start (iteration 0).
    assert result.history_iterations == list(range(record["evaluations"] + 1)) and seen
    assert len(result.history) == record["evaluations"] + 1 and result.history[0].dtype == torch.uint8
    with pytest.raises(ValueError, match="nothing to match"):
        match_gradients(model, target, images, labels, config, param_filter=lambda name: False)


def test_cosine_distance_ignores_scale_and_l2_scale_is_the_target_norm() -> None:
    target = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([[3.0]])}
    scaled = {k: 5 * v for k, v in target.items()}
    assert float(update_distance(scaled, target, "cosine")) == pytest.approx(0.0, abs=1e-6)
    zero = {k: torch.zeros_like(v) for k, v in target.items()}
    assert float(update_distance(zero, target, "l2")) == pytest.approx(reference_scale(target, "l2"))
    assert reference_scale(target, "cosine") == 1
    assert reference_scale(target, "layer_cosine") == 2


def test_cosine_is_one_similarity_over_the_whole_gradient_vector() -> None:
    # Two tiny "layers": the first is large and agrees in direction, the second is small and orthogonal.
    target = {"a": torch.tensor([10.0, 0.0]), "b": torch.tensor([0.0, 1.0])}
    update = {"a": torch.tensor([10.0, 0.0]), "b": torch.tensor([1.0, 0.0])}
    # Whole vectors u = (10, 0, 1, 0), t = (10, 0, 0, 1): cos = 100 / (sqrt(101) sqrt(101)).
    whole = 1 - 100 / 101
    per_layer = (1 - 1) + (1 - 0)  # the sum of per-layer cosine distances: 1.0
    assert float(update_distance(update, target, "cosine")) == pytest.approx(whole, abs=1e-6)
    assert float(update_distance(update, target, "layer_cosine")) == pytest.approx(per_layer, abs=1e-6)
    assert abs(whole - per_layer) > 0.5


def test_restarts_are_chosen_on_the_gradient_distance_not_the_prior() -> None:
    _, model, images, labels = _victim("linreg", 1, 4, 1)
    target = batch_gradient(model, images, labels)
    far = torch.zeros_like(images)
    starts = iter([images.clone(), far.clone()])  # attempt 0 starts at the truth, attempt 1 far from it

    def penalty(x):  # favours the far start: the objective picks it, the distance picks the truth
        return 100 * (x - far).pow(2).sum()

    # Small steps, but large enough that both drawn starts move (a drawn start that does not move is never kept).
    config = MatchConfig(optimizer="adam", lr=5e-3, iterations=2, restarts=2, max_redraws=0)
    result = match_gradients(model, target, lambda generator: next(starts), labels, config, extra_penalty=penalty)
    losses = [a["loss"] for a in result.attempts]
    objectives = [a["objective"] for a in result.attempts]
    assert losses.index(min(losses)) == 0 and objectives.index(min(objectives)) == 1
    assert torch.allclose(result.images, images, atol=2e-2) and result.distance == min(losses)


def test_snapshots_are_uint8_and_bounded() -> None:
    _, model, images, labels = _victim("linreg", 1, 4, 1)
    target = batch_gradient(model, images, labels)
    config = MatchConfig(optimizer="adam", lr=0.01, iterations=100, snapshot_every=1, snapshot_limit=8)
    result = match_gradients(model, target, random_init((1, 1, 4, 4), "gray"), labels, config)
    assert 4 <= len(result.history) <= 8 and all(h.dtype == torch.uint8 for h in result.history)
    steps = {b - a for a, b in zip(result.history_iterations, result.history_iterations[1:], strict=False)}
    assert result.history_iterations[0] == 0 and result.history_iterations[-1] == 100 and max(steps) > 1


def test_local_steps_simulation_matches_a_two_step_update() -> None:
    spec, model, images, labels = _victim("lenet", 1, 8, 1, seed=1)
    lr, steps = 0.1, 2
    new_weights = local_steps_update(model, images, labels, steps=steps, lr=lr)
    observation = observe(spec, model.state_dict(), new_weights, "local_steps", ThreatModel(),
                          {"lr": lr, "local_steps": steps, "batch_size": 1})
    problem = matching_problem(observation, torch.device("cpu"))
    assert problem.update_mode == "simulate"
    # The simulated pseudo-gradient at the true input reproduces the observation exactly.
    at_truth = problem.update_fn(images, labels)
    assert all(torch.allclose(at_truth[k], problem.target[k], atol=1e-6) for k in problem.target)
    config = MatchConfig(iterations=60, tolerance=1e-10)
    result = match_gradients(problem.update_fn, problem.target, random_init((1, 1, 8, 8), "gray"), labels, config)
    assert float(psnr(result.images.clamp(0, 1), images)) > 30
    assert matching_problem(observation, torch.device("cpu"), "pseudo_gradient").update_mode == "pseudo_gradient"


def test_simulation_needs_the_granted_hyperparameters() -> None:
    spec, model, images, labels = _victim("linreg", 1, 4, 1)
    new_weights = local_steps_update(model, images, labels, steps=2, lr=0.1)
    hidden = ThreatModel(local_hparams_known=False)
    observation = observe(spec, model.state_dict(), new_weights, "local_steps", hidden, {"lr": 0.1, "local_steps": 2})
    assert matching_problem(observation, torch.device("cpu")).update_mode == "pseudo_gradient"
    with pytest.raises(ValueError, match="needs the client's lr and local_steps"):
        matching_problem(observation, torch.device("cpu"), "simulate")
    with pytest.raises(ValueError, match="steps >= 1"):
        local_steps_update_fn(model, dict(model.named_parameters()), 0, 0.1)


def test_config_rejects_unknown_choices() -> None:
    with pytest.raises(ValueError, match="distance"):
        MatchConfig(distance="l1")
    with pytest.raises(ValueError, match="parametrization"):
        MatchConfig(parametrization="tanh")


def test_compact_lbfgs_follows_torch_lbfgs() -> None:
    from fedleak.attacks.lbfgs import CompactLBFGS

    _, model, images, labels = _victim("lenet", 1, 8, 1)
    target = batch_gradient(model, images, labels)
    update = gradient_update_fn(model, list(target))
    paths = []
    for make in (lambda v: torch.optim.LBFGS(v, lr=1, max_iter=1, history_size=5),
                 lambda v: CompactLBFGS(v, 1.0, 5)):
        x = (0.5 + 0.01 * torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
        optimizer = make([x])

        def closure(x=x):
            value = update_distance(update(x, labels), target, "l2")
            x.grad = torch.autograd.grad(value, [x])[0]
            return value.detach()

        for _ in range(15):  # more steps than the history holds: the ring buffer wraps
            optimizer.step(closure)
        paths.append(x.detach().clone())
    assert torch.allclose(paths[0], paths[1], atol=1e-4)


def test_fixed_step_lbfgs_checks_the_tolerance_at_every_evaluation() -> None:
    _, model, images, labels = _victim("lenet", 1, 8, 1)
    target = batch_gradient(model, images, labels)
    config = MatchConfig(iterations=60, tolerance=1e-6)
    result = match_gradients(model, target, random_init((1, 1, 8, 8), "gray"), labels, config)
    record = result.attempts[0]
    assert record["stop"].startswith("converged")
    # Stopped at the first evaluation under the tolerance, not at the end of an outer iteration.
    assert record["evaluations"] % config.lbfgs_inner != 0 or record["evaluations"] < config.lbfgs_inner


def test_conv_kernel_choice_is_resolved_and_the_flag_restored() -> None:
    from fedleak.attacks.cpu_kernels import conv_kernels, pick_kernels

    before = torch.backends.mkldnn.enabled
    calls = []
    assert pick_kernels("native", lambda: calls.append(1)) == "native" and not calls  # a fixed choice times nothing
    chosen = pick_kernels("auto", lambda: calls.append(torch.backends.mkldnn.enabled))
    assert chosen in ("onednn", "native")
    if torch.backends.mkldnn.is_available():
        assert set(calls) == {True, False}  # the probe ran under both kernels
    with pytest.raises(RuntimeError), conv_kernels("native"):
        assert torch.backends.mkldnn.enabled is False
        raise RuntimeError("the flag must come back even after an error")
    assert torch.backends.mkldnn.enabled == before
    with pytest.raises(ValueError, match="conv_kernels"):
        MatchConfig(conv_kernels="fast")


def test_the_loop_reports_its_kernels_and_a_fixed_choice_is_reproducible() -> None:
    _, model, images, labels = _victim("lenet", 1, 8, 1)
    target = batch_gradient(model, images, labels)
    results = [
        match_gradients(model, target, random_init((1, 1, 8, 8), "gray"), labels,
                        MatchConfig(iterations=5, conv_kernels="native"), generator=torch.Generator().manual_seed(3))
        for _ in range(2)
    ]
    assert results[0].diagnostics()["conv_kernels"] == "native"
    assert torch.equal(results[0].images, results[1].images)
    assert MatchConfig().conv_kernels == "native"  # timing-based choices are an opt-in
    auto = match_gradients(model, target, random_init((1, 1, 8, 8), "gray"), labels,
                           MatchConfig(iterations=2, conv_kernels="auto"))
    assert auto.conv_kernels in ("onednn", "native") and auto.diagnostics()["conv_kernels_setting"] == "auto"


def _quadratic_closure(x: torch.Tensor, scale: torch.Tensor):
    def closure() -> torch.Tensor:
        value = (scale * x.pow(2)).sum()
        (x.grad,) = torch.autograd.grad(value, [x])
        return value.detach()

    return closure


def test_fixed_step_lbfgs_caps_each_step() -> None:
    from fedleak.attacks.lbfgs import CompactLBFGS

    # A badly scaled quadratic: the first steepest-descent steps of lr 1 overshoot by far.
    x = torch.tensor([3.0, -2.0, 1.0], requires_grad=True)
    scale = torch.tensor([1e4, 1.0, 1e-2])
    optimizer = CompactLBFGS([x], lr=1.0, history=10, max_step=0.5)
    moves = []
    for _ in range(40):
        before = x.detach().clone()
        optimizer.step(_quadratic_closure(x, scale))
        moves.append(float((x.detach() - before).abs().max()))
    assert max(moves) <= 0.5 + 1e-6 and optimizer.capped > 0
    assert float(x.detach().abs()[:2].max()) < 1e-2  # capped steps still converge on the well-scaled coordinates


def test_fixed_step_lbfgs_restarts_when_its_pairs_stop_giving_descent() -> None:
    from fedleak.attacks.lbfgs import CompactLBFGS

    x = torch.tensor([1.0, 2.0], requires_grad=True)
    scale = torch.tensor([1.0, 3.0])
    optimizer = CompactLBFGS([x], lr=1.0, history=5)
    for _ in range(2):
        optimizer.step(_quadratic_closure(x, scale))
    assert optimizer.order  # curvature pairs are stored
    # Stand in for numerically spoiled pairs: the quasi-Newton direction points uphill.
    optimizer._inverse_hessian_times = lambda g, sg, yg: -g
    before = x.detach().clone()
    optimizer.step(_quadratic_closure(x, scale))
    assert optimizer.resets == 1 and not torch.equal(before, x.detach())
    gradient = 2 * scale * before
    assert float((x.detach() - before) @ gradient) < 0  # the restarted step goes downhill (steepest descent)
