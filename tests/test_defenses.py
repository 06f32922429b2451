"""Client-side defenses: each transform against its definition, local DP against Flower's own LocalDpMod, DP-SGD
against the plain gradient (Opacus with no noise and no clipping), and the mod inside a Flower message exchange."""

from __future__ import annotations

import math

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict

from fedleak import protocol
from fedleak.clients.defense_mod import make_defense_mod
from fedleak.defenses import (
    DpSgdDefense,
    LocalDpDefense,
    NoDefense,
    PruneDefense,
    QuantizeDefense,
    apply_defense,
    defense_label,
    local_dp_std,
    noise_generator,
)
from fedleak.defenses.dp_sgd import dp_sgd_update
from fedleak.drivers.scenarios import parse_scenario
from fedleak.errors import UserError
from fedleak.privacy import gaussian_delta
from fedleak.training import batch_gradient, local_steps_update
from fedleak.types import ModelSpec

SPEC = ModelSpec("lenet", 1, 8, 4)
pytestmark = pytest.mark.usefixtures("flower_task_identity")  # Flower messages are built here


def _update(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"a.weight": torch.randn(6, 5, generator=g), "a.bias": torch.randn(6, generator=g),
            "steps": torch.tensor(3)}  # an integer buffer: no defense may touch it


def _victim(batch: int = 3):
    torch.manual_seed(0)
    model = SPEC.build()
    g = torch.Generator().manual_seed(1)
    return model, torch.rand(batch, 1, 8, 8, generator=g), torch.randint(0, 4, (batch,), generator=g)


def test_no_defense_and_dp_sgd_leave_the_finished_update_alone() -> None:
    update = _update()
    for defense in (NoDefense(), DpSgdDefense()):
        assert apply_defense(update, defense, noise_generator(0, 0, 1)) is update


def test_prune_zeroes_exactly_the_smallest_share_of_every_tensor() -> None:
    update = _update()
    out = apply_defense(update, PruneDefense(kind="prune", ratio=0.75), noise_generator(0, 0, 1))
    for name in ("a.weight", "a.bias"):
        v, p = update[name].reshape(-1), out[name].reshape(-1)
        drop = int(0.75 * v.numel())
        assert int((p == 0).sum()) == drop
        kept = p != 0
        assert torch.equal(p[kept], v[kept])  # survivors unchanged
        assert float(v[~kept].abs().max()) <= float(v[kept].abs().min())  # and they are the largest
    assert torch.equal(out["steps"], update["steps"])


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_quantize_uses_the_allowed_levels_and_rounds_to_the_nearest(bits: int) -> None:
    update = _update()
    out = apply_defense(update, QuantizeDefense(kind="quantize", bits=bits), noise_generator(0, 0, 1))
    for name in ("a.weight", "a.bias"):
        v, q = update[name], out[name]
        step = float(v.abs().max()) / (2 ** (bits - 1) - 1)
        assert len(torch.unique(q)) <= 2**bits - 1
        assert float((q - v).abs().max()) <= step / 2 + 1e-6
        assert torch.allclose(q / step, torch.round(q / step), atol=1e-4)


def test_local_dp_clips_exactly_like_flowers_local_dp_mod() -> None:
    from flwr.clientapp.mod import LocalDpMod

    # Weights sent and weights after training; a huge epsilon makes the noise negligible, leaving the clipping.
    sent = {k: v for k, v in _update(1).items() if k != "steps"}
    trained = {k: v + 3.0 * torch.randn(v.shape, generator=torch.Generator().manual_seed(2)) for k, v in sent.items()}
    settings = {"clipping_norm": 0.5, "sensitivity": 0.5, "epsilon": 1e12, "delta": 1e-5}
    msg = Message(RecordDict({"arrays": ArrayRecord(torch_state_dict=sent)}), dst_node_id=1,
                  message_type=MessageType.TRAIN)

    def call_next(message: Message, context: Context) -> Message:
        return Message(RecordDict({"arrays": ArrayRecord(torch_state_dict=trained)}), reply_to=message)

    flower = LocalDpMod(**settings)(msg, Context(1, 1, {}, RecordDict(), {}), call_next)
    flower_weights = flower.content["arrays"].to_torch_state_dict()
    ours = apply_defense(trained, LocalDpDefense(kind="local_dp", **settings), noise_generator(0, 0, 1), sent=sent)
    for name in sent:
        assert torch.allclose(ours[name], flower_weights[name], atol=1e-5)
    change = math.sqrt(sum(float((ours[k] - sent[k]).pow(2).sum()) for k in sent))
    assert change == pytest.approx(0.5, rel=1e-4)


def test_local_dp_noise_has_the_gaussian_mechanism_scale() -> None:
    defense = LocalDpDefense(kind="local_dp", clipping_norm=0.1, epsilon=2.0, delta=1e-5, neighbours="zero_update")
    std = local_dp_std(defense)
    # Calibrated with the analytic Gaussian mechanism: one release is exactly (ε, δ)-DP, and tighter than the
    # classical bound Flower's LocalDpMod uses.
    assert gaussian_delta(2.0, 0.1 / std) == pytest.approx(1e-5, rel=1e-6)
    assert std < 0.1 * math.sqrt(2 * math.log(1.25e5)) / 2.0
    out = apply_defense({"w": torch.zeros(200_000)}, defense, noise_generator(0, 0, 1))
    assert float(out["w"].std()) == pytest.approx(std, rel=0.02)
    assert abs(float(out["w"].mean())) < 0.01 * std


def test_defense_noise_is_reproducible_per_client_and_round_and_differs_between_them() -> None:
    defense = LocalDpDefense(kind="local_dp")
    runs = [apply_defense(_update(), defense, noise_generator(7, client, rnd))["a.bias"]
            for client, rnd in [(1, 2), (1, 2), (2, 2), (1, 3)]]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2]) and not torch.equal(runs[0], runs[3])


def test_defense_label_names_the_kind_and_its_settings() -> None:
    assert defense_label(NoDefense()) == "none"
    assert defense_label(PruneDefense(kind="prune", ratio=0.5)) == "prune(ratio=0.5)"
    assert defense_label(DpSgdDefense(kind="dp_sgd", noise_multiplier=0.1)).startswith("dp_sgd(max_grad_norm=1,")


def _dp_gradient(model, images, labels, defense: DpSgdDefense) -> dict[str, torch.Tensor]:
    """One FedSGD round of DP-SGD on the batch, whose expected size is 2 for an empty batch."""
    expected = len(labels) or 2
    return dp_sgd_update(model, [(images, labels)], 1, 0.1, defense, expected, noise_generator(0, 0, 1),
                         send_gradient=True)


def test_dp_sgd_without_noise_or_clipping_is_the_plain_gradient_and_leaves_the_model_alone() -> None:
    model, images, labels = _victim()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    defense = DpSgdDefense(kind="dp_sgd", max_grad_norm=1e9, noise_multiplier=0.0)
    update = _dp_gradient(model, images, labels, defense)
    plain = batch_gradient(model, images, labels)
    assert update.keys() == plain.keys()
    for name in plain:
        assert torch.allclose(update[name], plain[name], atol=1e-6)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_dp_sgd_clips_a_single_sample_gradient_to_the_bound_without_turning_it() -> None:
    model, images, labels = _victim(batch=1)
    plain = torch.cat([g.reshape(-1) for g in batch_gradient(model, images, labels).values()])
    defense = DpSgdDefense(kind="dp_sgd", max_grad_norm=0.01, noise_multiplier=0.0)
    update = _dp_gradient(model, images, labels, defense)
    clipped = torch.cat([g.reshape(-1) for g in update.values()])
    assert float(plain.norm()) > 0.01
    assert float(clipped.norm()) == pytest.approx(0.01, rel=1e-4)
    assert float(torch.nn.functional.cosine_similarity(clipped, plain, dim=0)) == pytest.approx(1.0, abs=1e-5)


def test_dp_sgd_local_steps_without_noise_or_clipping_is_plain_sgd() -> None:
    model, images, labels = _victim()
    defense = DpSgdDefense(kind="dp_sgd", max_grad_norm=1e9, noise_multiplier=0.0)
    update = dp_sgd_update(model, [(images, labels)], 3, 0.05, defense, len(labels), noise_generator(0, 0, 1),
                           send_gradient=False)
    plain = local_steps_update(model, images, labels, steps=3, lr=0.05)
    for name, value in plain.items():
        assert torch.allclose(update[name], value, atol=1e-5)


def test_dp_sgd_noise_hides_the_gradient() -> None:
    model, images, labels = _victim(batch=1)
    plain = torch.cat([g.reshape(-1) for g in batch_gradient(model, images, labels).values()])
    noisy = _dp_gradient(model, images, labels, DpSgdDefense(kind="dp_sgd", max_grad_norm=0.01, noise_multiplier=1.0))
    noisy = torch.cat([g.reshape(-1) for g in noisy.values()])
    assert abs(float(torch.nn.functional.cosine_similarity(noisy, plain, dim=0))) < 0.2


def test_dp_sgd_on_an_empty_poisson_batch_sends_noise_alone() -> None:
    model, images, labels = _victim(batch=2)
    defense = DpSgdDefense(kind="dp_sgd", max_grad_norm=0.5, noise_multiplier=1.0)
    silent = _dp_gradient(model, images[:0], labels[:0], DpSgdDefense(kind="dp_sgd", noise_multiplier=0.0))
    assert all(float(g.abs().max()) == 0.0 for g in silent.values())
    noisy = torch.cat([g.reshape(-1) for g in _dp_gradient(model, images[:0], labels[:0], defense).values()])
    # Noise of σ·C on the sum, divided by the expected batch size (2 here).
    assert float(noisy.std()) == pytest.approx(1.0 * 0.5 / 2, rel=0.1)


def _scenario(**training):
    return parse_scenario({
        "data": {"dataset": "mnist"},
        "clients": {"count": 3, "overrides": [{"client": 1, "defense": {"kind": "prune", "ratio": 0.5}}]},
        "training": {"model": "lenet", **training},
    })


def test_a_scenario_sets_a_default_defense_and_per_client_overrides() -> None:
    scenario = _scenario(defense={"kind": "quantize", "bits": 4})
    assert scenario.client_defense(0) == QuantizeDefense(kind="quantize", bits=4)
    assert scenario.client_defense(1) == PruneDefense(kind="prune", ratio=0.5)
    assert _scenario().client_defense(2) == NoDefense()


@pytest.mark.parametrize(("raw", "expected"), [
    ({"kind": "prune", "ratio": 1.5}, "training.defense.ratio"),
    ({"kind": "shuffle"}, "training.defense"),
    ({"kind": "local_dp", "epsilon": 0}, "training.defense.epsilon"),
])
def test_a_bad_defense_is_one_line_naming_the_field(raw, expected) -> None:
    with pytest.raises(UserError) as info:
        _scenario(defense=raw)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_dp_sgd_on_a_batchnorm_model_is_refused_before_the_run() -> None:
    with pytest.raises(UserError, match="Opacus cannot train model 'resnet18'"):
        _scenario(model="resnet18", defense={"kind": "dp_sgd"})


def _exchange(scenario, client: int, kind=MessageType.TRAIN):
    """Run the defense mod around a stand-in ClientApp that replies with a fixed gradient."""
    gradient = {k: v for k, v in _update(3).items() if k != "steps"}
    msg = Message(RecordDict({protocol.SERVER_ARRAYS: ArrayRecord(torch_state_dict=gradient),
                              protocol.SERVER_CONFIG: ConfigRecord({"server-round": 2})}),
                  dst_node_id=client + 1, message_type=kind)

    def client_app(message: Message, context: Context) -> Message:
        return Message(RecordDict({protocol.UPDATE: ArrayRecord(torch_state_dict=gradient)}), reply_to=message)

    mod = make_defense_mod(scenario.model_dump_json(), lambda context: int(context.node_config["partition-id"]))
    context = Context(1, client + 1, {"partition-id": client}, RecordDict(), {})
    return gradient, mod(msg, context, client_app).content[protocol.UPDATE].to_torch_state_dict()


def test_the_mod_defends_each_clients_train_reply_with_its_own_defense() -> None:
    scenario = _scenario()
    sent, pruned = _exchange(scenario, client=1)
    assert int((pruned["a.weight"] == 0).sum()) == 15  # half of 30 entries
    sent, plain = _exchange(scenario, client=0)
    assert all(torch.equal(plain[k], sent[k]) for k in sent)
    sent, evaluated = _exchange(scenario, client=1, kind=MessageType.EVALUATE)
    assert all(torch.equal(evaluated[k], sent[k]) for k in sent)


def test_importing_opacus_leaves_the_root_logger_alone() -> None:
    # Opacus calls logging.basicConfig at import; left in place, every Flower/Ray DEBUG record would be printed.
    import subprocess
    import sys

    code = ("import logging; from fedleak.privacy import import_opacus; import_opacus(); "
            "print(len(logging.getLogger().handlers))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"
