"""The one client update: epoch batches, SGD over them, and the ClientApp sending exactly what client_update
computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict

from fedleak import protocol
from fedleak.clients.app import build_client_app
from fedleak.clients.update import LocalTraining, client_update, round_batches, train_update
from fedleak.defenses import NoDefense, noise_generator
from fedleak.drivers.scenarios import parse_scenario
from fedleak.errors import UserError
from fedleak.federated_data import federated_data
from fedleak.server.app import initial_weights
from fedleak.training import functional_gradient
from fedleak.types import ModelSpec

EPOCHS = LocalTraining("epochs", batch_size=4, local_steps=1, local_epochs=3, lr=0.05)


def test_epoch_batches_cover_the_shard_once_per_epoch_in_a_fresh_order() -> None:
    shard = np.arange(100, 110)
    batches = round_batches(shard, EPOCHS, seed=1, client=2, server_round=3)
    assert [len(b) for b in batches] == [4, 4, 2] * 3
    epochs = [np.concatenate(batches[i : i + 3]) for i in (0, 3, 6)]
    assert all(sorted(e.tolist()) == shard.tolist() for e in epochs)
    assert not np.array_equal(epochs[0], epochs[1])  # shuffled anew every epoch
    again = round_batches(shard, EPOCHS, seed=1, client=2, server_round=3)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
    other_round = round_batches(shard, EPOCHS, seed=1, client=2, server_round=4)
    assert not np.array_equal(np.concatenate(batches), np.concatenate(other_round))


def test_an_epoch_update_is_one_sgd_step_per_minibatch_in_order() -> None:
    spec = ModelSpec("lenet", 1, 28, 10, activation="relu")
    torch.manual_seed(0)
    model = spec.build()
    g = torch.Generator().manual_seed(0)
    images, labels = torch.rand(10, 1, 28, 28, generator=g), torch.randint(0, 10, (10,), generator=g)
    order = round_batches(np.arange(10), EPOCHS, seed=0, client=0, server_round=1)
    batches = [(images[b], labels[b]) for b in order]
    update, loss = train_update(model, batches, EPOCHS, NoDefense(), torch.Generator(), 10)
    weights = {k: v.detach().clone() for k, v in model.named_parameters()}
    for x, y in batches:
        grads = functional_gradient(model, weights, x, y)
        weights = {k: weights[k] - 0.05 * grads[k] for k in weights}
    assert update.keys() == model.state_dict().keys()
    assert all(torch.allclose(update[k], weights[k], atol=1e-6) for k in weights)
    assert loss > 0


def _scenario(defense: dict, update: str = "epochs") -> object:
    training = {"rounds": 2, "update": update, "lr": 0.05, "batch_size": 8, "model": "lenet",
                "activation": "relu", "init": "default", "defense": defense}
    if update == "epochs":
        training["local_epochs"] = 2
    return parse_scenario({"seed": 3, "data": {"dataset": "mnist", "source": "bundled", "eval_fraction": 0.5},
                           "clients": {"count": 50, "per_round": 5}, "training": training})


@pytest.mark.usefixtures("flower_task_identity")
@pytest.mark.parametrize("defense", [{"kind": "prune", "ratio": 0.5}, {"kind": "dp_sgd", "noise_multiplier": 0.5},
                                     {"kind": "local_dp", "epsilon": 4.0}])
def test_the_client_app_sends_what_client_update_computes(defense: dict) -> None:
    scenario, client, server_round = _scenario(defense), 7, 2
    data = federated_data(scenario)
    weights = initial_weights(scenario, data.model_spec())
    msg = Message(RecordDict({protocol.SERVER_ARRAYS: ArrayRecord(torch_state_dict=weights),
                              protocol.SERVER_CONFIG: ConfigRecord({"server-round": server_round})}),
                  dst_node_id=client + 1, message_type=MessageType.TRAIN)
    context = Context(1, client + 1, {"partition-id": client}, RecordDict(), {})
    reply = build_client_app(scenario)(msg, context)
    sent = reply.content[protocol.UPDATE].to_torch_state_dict()

    model = data.model_spec().build()
    model.load_state_dict(weights)
    plan = LocalTraining.of(scenario, client)
    shard = data.shards[client]
    batches = round_batches(shard, plan, scenario.seed, client, server_round, scenario.client_defense(client))
    expected, _ = client_update(model, [data.get(b) for b in batches], plan, scenario.client_defense(client),
                                noise_generator(scenario.seed, client, server_round), len(shard))
    assert sent.keys() == expected.keys()
    assert all(torch.allclose(sent[k], expected[k], atol=1e-6) for k in expected)

    public = reply.content[protocol.PUBLIC]
    assert public["update_kind"] == "epochs" and public["local_epochs"] == 2
    assert public["num_examples"] == len(shard) == reply.content[protocol.METRICS][protocol.NUM_EXAMPLES]
    units = {"dp_sgd": "record", "local_dp": "update(replace-one)"}
    assert public.get("dp_unit") == units.get(defense["kind"])
    assert ("dp_epsilon" in public) == (defense["kind"] in units)
    audit = reply.content[protocol.AUDIT][protocol.INDICES]
    assert audit == [int(i) for b in batches for i in b]  # every image trained on, in order


@pytest.mark.usefixtures("flower_task_identity")
def test_a_query_names_the_client() -> None:
    scenario = _scenario({"kind": "none"})
    msg = Message(RecordDict(), dst_node_id=5, message_type=MessageType.QUERY)
    reply = build_client_app(scenario)(msg, Context(1, 5, {"partition-id": 4}, RecordDict(), {}))
    assert reply.content[protocol.IDENTITY][protocol.CLIENT_ID] == 4


@pytest.mark.parametrize(("change", "field"), [
    ({"training": {"update": "gradient", "local_epochs": 2}}, "local_epochs"),
    ({"clients": {"count": 3, "per_round": 4}}, "per_round"),
])
def test_bad_training_settings_are_one_line_naming_the_field(change: dict, field: str) -> None:
    raw = {"data": {"dataset": "mnist"}, "clients": {"count": 3}, "training": {"model": "lenet"}}
    for section, values in change.items():
        raw[section] = {**raw[section], **values}
    with pytest.raises(UserError, match=field) as error:
        parse_scenario(raw)
    assert "\n" not in str(error.value)


def test_with_sampled_clients_the_rounds_evaluators_share_the_whole_held_out_set() -> None:
    from fedleak.participation import sampled_clients

    scenario = _scenario({"kind": "none"})
    data = federated_data(scenario)
    for server_round in (1, 2):
        chosen = sampled_clients(50, 5, scenario.seed, server_round)
        slices = [data.eval_indices_of(c, server_round) for c in range(50)]
        assert all(len(slices[c]) == 0 for c in range(50) if c not in chosen)
        together = np.concatenate([slices[c] for c in chosen])
        assert sorted(together.tolist()) == sorted(data.eval_indices.tolist())
