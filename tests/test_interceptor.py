"""The interceptor is honest (aggregation unchanged, bit for bit) and the attacker never reaches ground truth.

Mock replies, no Flower runtime: Prepare / Execute / Assert in the style of Flower's own strategy tests.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg

from fedleak import protocol
from fedleak.attacks import ATTACKS, Attack, register_attack
from fedleak.clients.update import LocalTraining, train_update
from fedleak.defenses import NoDefense
from fedleak.drivers.scenarios import parse_scenario
from fedleak.runtime.local import LocalExecutor
from fedleak.server.fedsgd import FedSGD
from fedleak.server.interceptor import InterceptingStrategy, ReplyTap
from fedleak.server.leakage import LeakageTap
from fedleak.server.schedule import scheduled
from fedleak.types import ModelSpec, Observation, Reconstruction

# Flower stamps every new Message with the task identity its runtime sets: see conftest.flower_task_identity.
pytestmark = pytest.mark.usefixtures("flower_task_identity")

SPEC = ModelSpec("lenet", in_channels=1, image_size=28, num_classes=10)
SEEN: list[Observation] = []


if "test_spy" not in ATTACKS:

    @register_attack("test_spy")
    class SpyAttack(Attack):
        """Records exactly what an attack receives, and returns nothing useful."""

        def reconstruct(self, observation: Observation) -> Reconstruction:
            SEEN.append(observation)
            return Reconstruction.failed("spy only records")


def _dataset(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def _replies(kind: str, weights: dict[str, torch.Tensor], batch_sizes: list[int], server_round: int = 1):
    """Replies as the ClientApp builds them, from a fixed random data source."""
    images, labels = _dataset()
    model = SPEC.build()
    model.load_state_dict(weights)
    replies, start = [], 0
    for client, batch in enumerate(batch_sizes):
        idx = np.arange(start, start + batch)
        start += batch
        plan = LocalTraining(kind, batch, local_steps=3, local_epochs=1, lr=0.05)
        update, loss = train_update(model, [(images[idx], labels[idx])], plan, NoDefense(), torch.Generator(), batch)
        content = RecordDict({
            protocol.UPDATE: ArrayRecord(torch_state_dict=update),
            protocol.METRICS: MetricRecord({protocol.NUM_EXAMPLES: batch, protocol.TRAIN_LOSS: loss}),
            protocol.PUBLIC: ConfigRecord({"client": client, "round": server_round, "update_kind": kind,
                                           "batch_size": batch, "local_steps": 3 if kind == "local_steps" else 1,
                                           "lr": 0.05}),
            protocol.AUDIT: ConfigRecord({protocol.INDICES: [int(i) for i in idx]}),
        })
        replies.append(Message(content=content, dst_node_id=client + 1, message_type=MessageType.TRAIN))
    return replies


def _ground_truth(indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = _dataset()
    return images[indices], labels[indices]


def _scenario(update: str, labels_known: bool = False, hparams_known: bool = True, attacks=("test_spy",)):
    return parse_scenario({
        "data": {"dataset": "mnist"}, "clients": {"count": 3},
        "training": {"update": update, "lr": 0.05, "local_steps": 3},
        "attacks": [{"name": a} for a in attacks],
        "threat_model": {"labels_known": labels_known, "local_hparams_known": hparams_known},
    })


def _weights(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in SPEC.build().state_dict().items()}


def _aggregate(strategy, weights, replies):
    """configure_train then aggregate_train, as Strategy.start does, with a grid that only lists nodes."""

    class _Grid:
        def get_node_ids(self):
            return [1, 2, 3]

    sent = ArrayRecord(torch_state_dict=weights)
    list(strategy.configure_train(1, sent, ConfigRecord(), _Grid()))
    return strategy.aggregate_train(1, replies)


def _plain(update: str):
    kwargs = {"min_train_nodes": 3, "min_available_nodes": 3}
    return FedSGD(lr=0.05, **kwargs) if update == "gradient" else FedAvg(**kwargs)


@pytest.mark.parametrize("update", ["gradient", "local_steps"])
def test_aggregate_with_interceptor_equals_aggregate_without(update):
    # Prepare: identical replies for both runs, a tap that really observes and attacks.
    weights = _weights()
    scenario = _scenario(update)
    tap = LeakageTap(scenario, SPEC, _ground_truth, LocalExecutor(device="cpu"))
    SEEN.clear()
    # Execute
    plain_arrays, plain_metrics = _aggregate(_plain(update), weights, _replies(update, weights, [1, 2, 4]))
    wrapped_arrays, wrapped_metrics = _aggregate(
        InterceptingStrategy(_plain(update), tap), weights, _replies(update, weights, [1, 2, 4])
    )
    # Assert: bit-identical aggregate and metrics, and the tap did see all three replies.
    assert list(plain_arrays.keys()) == list(wrapped_arrays.keys())
    for name in plain_arrays:
        assert np.array_equal(plain_arrays[name].numpy(), wrapped_arrays[name].numpy()), name
    assert dict(plain_metrics) == dict(wrapped_metrics)
    assert len(SEEN) == 3
    assert tap.ledger.clients_per_round[1] == {0, 1, 2}


def test_replies_reach_the_aggregator_unchanged():
    weights = _weights()
    replies = _replies("gradient", weights, [2, 2, 2])
    before = [{k: v.numpy().copy() for k, v in r.content[protocol.UPDATE].items()} for r in replies]

    received = []

    class Recorder(FedSGD):
        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            received.extend(replies)
            return super().aggregate_train(server_round, replies)

    tap = LeakageTap(_scenario("gradient"), SPEC, _ground_truth, LocalExecutor(device="cpu"))
    _aggregate(InterceptingStrategy(Recorder(lr=0.05, min_train_nodes=3, min_available_nodes=3), tap), weights,
               replies)
    assert [id(m) for m in received] == [id(m) for m in replies]
    for reply, original in zip(received, before, strict=True):
        assert set(reply.content.keys()) == {protocol.UPDATE, protocol.METRICS, protocol.PUBLIC, protocol.AUDIT}
        for name, array in reply.content[protocol.UPDATE].items():
            assert np.array_equal(array.numpy(), original[name])


def test_fedsgd_steps_along_the_weighted_mean_gradient():
    weights = _weights()
    replies = _replies("gradient", weights, [1, 2, 4])
    grads = [{k: v.numpy() for k, v in r.content[protocol.UPDATE].items()} for r in replies]
    arrays, _ = _aggregate(FedSGD(lr=0.05, min_train_nodes=3, min_available_nodes=3), weights, replies)
    for name, w in weights.items():
        mean = (1 * grads[0][name] + 2 * grads[1][name] + 4 * grads[2][name]) / 7
        np.testing.assert_allclose(arrays[name].numpy(), w.numpy() - 0.05 * mean, rtol=1e-5, atol=1e-6)


def test_attack_sees_no_ground_truth():
    weights = _weights()
    replies = _replies("gradient", weights, [3, 1, 2])
    SEEN.clear()
    tap = LeakageTap(_scenario("gradient"), SPEC, _ground_truth, LocalExecutor(device="cpu"))
    tap.on_train_replies(1, ArrayRecord(torch_state_dict=weights), replies)
    assert len(SEEN) == 3
    for observation in SEEN:
        # Only the update, the global model and granted public metadata: no indices, no labels, no pixels.
        assert set(observation.metadata) == {"round", "client", "batch_size", "local_steps", "lr"}
        assert observation.labels is None
        assert set(observation.update) == {name for name, _ in SPEC.build().named_parameters()}
        assert set(observation.global_weights) == set(weights)
        shapes = {tuple(t.shape) for t in [*observation.update.values(), *observation.global_weights.values()]}
        assert not any(len(s) == 4 and s[1:] == (1, 28, 28) for s in shapes)  # no image-shaped tensor
    # The scorer still got the true batch through the context (it wrote failed rows for the spy).
    assert tap.ledger.attacks_finished == 3


def test_grants_decide_what_the_attacker_sees():
    weights = _weights()
    replies = _replies("local_steps", weights, [2, 2, 2])
    SEEN.clear()
    scenario = _scenario("local_steps", labels_known=True, hparams_known=False)
    LeakageTap(scenario, SPEC, _ground_truth, LocalExecutor(device="cpu")).on_train_replies(
        1, ArrayRecord(torch_state_dict=weights), replies)
    first = SEEN[0]
    assert "lr" not in first.metadata and "local_steps" not in first.metadata
    assert torch.equal(first.labels, _ground_truth(np.array([0, 1]))[1])


def test_schedule_selects_rounds_and_clients():
    scenario = parse_scenario({
        "data": {"dataset": "mnist"}, "clients": {"count": 3}, "training": {},
        "attacks": [{"name": "test_spy", "rounds": [1, 3], "clients": [0, 2]}],
    })
    attack = scenario.attacks[0]
    picked = [(r, c) for r in range(1, 5) for c in range(3) if scheduled(attack, r, c)]
    assert picked == [(1, 0), (1, 2), (3, 0), (3, 2)]


def test_tap_exceptions_are_not_swallowed_and_base_tap_is_inert():
    weights = _weights()

    class Broken(ReplyTap):
        def on_train_replies(self, server_round, sent, replies):
            raise ValueError("tap bug")

    with pytest.raises(ValueError, match="tap bug"):
        _aggregate(InterceptingStrategy(_plain("gradient"), Broken()), weights,
                   _replies("gradient", weights, [1, 1, 1]))
    arrays, _ = _aggregate(InterceptingStrategy(_plain("gradient"), ReplyTap()), weights,
                           _replies("gradient", weights, [1, 1, 1]))
    assert arrays is not None


def test_stoppable_grid_collects_replies_and_gives_up_once_stopped():
    import threading
    from types import SimpleNamespace

    from fedleak.server.grid import RunStopped, StoppableGrid

    class SlowGrid:
        """Replies to one pushed message per pull; knows two nodes."""

        pull_interval = 0.0

        def __init__(self):
            self.pending: list[str] = []

        def get_node_ids(self):
            return [1, 2]

        def push_messages(self, messages):
            self.pending = [f"m{i}" for i, _ in enumerate(messages)]
            return list(self.pending)

        def pull_messages(self, ids):
            if not self.pending:
                return []
            return [SimpleNamespace(metadata=SimpleNamespace(reply_to_message_id=self.pending.pop(0)))]

    stop = threading.Event()
    grid = StoppableGrid(SlowGrid(), stop)
    replies = grid.send_and_receive(["a", "b", "c"], timeout=5)
    assert sorted(r.metadata.reply_to_message_id for r in replies) == ["m0", "m1", "m2"]
    assert list(grid.get_node_ids()) == [1, 2]
    stop.set()
    with pytest.raises(RunStopped):
        grid.get_node_ids()
    with pytest.raises(RunStopped):
        grid.send_and_receive(["a"], timeout=5)


class _Rows:
    """A writer stand-in that keeps the leakage rows."""

    def __init__(self):
        self.rows = []

    def append_leakage(self, record):
        self.rows.append(record)

    def append_diagnostics(self, record, diagnostics):
        pass


@pytest.mark.parametrize("update", ["gradient", "local_steps"])
def test_secure_aggregation_shows_the_attack_only_the_aggregate_the_strategy_computes(update):
    weights = _weights()
    scenario = _scenario(update, attacks=("test_spy",))
    secure = scenario.training.model_copy(update={"secure_aggregation": True})
    scenario = scenario.model_copy(update={"training": secure})
    writer = _Rows()
    tap = LeakageTap(scenario, SPEC, _ground_truth, LocalExecutor(device="cpu"), writer=writer)
    SEEN.clear()
    arrays, _ = _aggregate(InterceptingStrategy(_plain(update), tap), weights, _replies(update, weights, [1, 2, 4]))
    tap.drain()
    # One observation for the round: the whole batch of 7 images behind one update, and no client of its own.
    assert len(SEEN) == 1
    (observation,) = SEEN
    assert observation.batch_size == 7 and observation.metadata["client"] == -1
    # Its update is exactly what the aggregator turned into the new model.
    if update == "gradient":
        expected = {k: weights[k] - 0.05 * observation.update[k] for k in observation.update}
    else:
        expected = observation.update
    for name, value in expected.items():
        np.testing.assert_allclose(arrays[name].numpy(), value.numpy(), rtol=1e-5, atol=1e-6)
    # One row: the aggregate (client -1), its seven-image batch, and the defense that hid the clients.
    (row,) = writer.rows
    assert row.client == -1 and row.batch_size == 7 and row.defense == "secure_aggregation"
    assert tap.ledger.clients_per_round[1] == {0, 1, 2}
