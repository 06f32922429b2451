"""The Flower ClientApp (Message API): one hospital that trains on its shard when the server selects it.

``train``: receive the global weights and the round number, take this round's batches from the client's shard
(reproducibly from seed, client and round), compute the update with the one client update of
:mod:`fedleak.clients.update` (FedSGD gradient, K steps on one batch, or E epochs over the shard; DP-SGD when that is
the client's defense), reply with the update, ``num-examples``, public metadata (with the privacy spent so far) and
the audit record. The defense mod then transforms the update when the client's defense says so.
``evaluate``: loss and accuracy of the global model on this client's slice of the held-out set.
``query``: the client's id, so the server can address the clients it samples (see fedleak/server/sampling.py).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedleak import protocol
from fedleak.clients.defense_mod import make_defense_mod
from fedleak.clients.update import LocalTraining, evaluate_model, round_batches, total_steps, train_update
from fedleak.config.loader import scenario_from_json
from fedleak.config.schema import Scenario
from fedleak.defenses import defense_modules, import_defense_modules, noise_generator
from fedleak.federated_data import FederatedData, federated_data
from fedleak.participation import rounds_taken_part
from fedleak.protocol import PublicMetadata


def client_id(context: Context) -> int:
    """The client's index: the simulation's partition id (the deployment engine sets it via --node-config)."""
    return int(context.node_config["partition-id"])


def _public_metadata(scenario: Scenario, client: int, server_round: int, plan: LocalTraining,
                     batches: list[np.ndarray], shard_size: int) -> PublicMetadata:
    """What a real server sees of how the client trained, plus the privacy its defense has spent so far."""
    defense = scenario.client_defense(client)
    # A batch the defense drew itself (DP-SGD's Poisson batch) has a private size: the client reports the nominal
    # batch size instead.
    nominal = plan.kind == "epochs" or defense.draws_batches()
    batch_size = plan.batch_size if nominal else len(batches[0])
    public = PublicMetadata(
        client=client, round=server_round, update_kind=plan.kind, batch_size=batch_size,
        local_steps=total_steps(plan, batches), local_epochs=plan.local_epochs if plan.kind == "epochs" else 0,
        lr=plan.lr, num_examples=shard_size if plan.kind == "epochs" else batch_size, defense=defense.label(),
    )
    clients = scenario.clients
    rounds = len(rounds_taken_part(clients.count, clients.per_round, scenario.seed, client, server_round))
    spent = defense.spent(plan, shard_size, rounds)
    if spent is not None:
        public = replace(public, dp_epsilon=spent.epsilon, dp_delta=spent.delta, dp_unit=spent.unit)
    return public


def _train_reply(msg: Message, scenario: Scenario, data: FederatedData, client: int) -> Message:
    server_round = int(msg.content[protocol.SERVER_CONFIG]["server-round"])
    model = data.model_spec().build()
    model.load_state_dict(msg.content[protocol.SERVER_ARRAYS].to_torch_state_dict())
    plan = LocalTraining.of(scenario, client)
    defense = scenario.client_defense(client)
    shard = data.shards[client]
    batches = round_batches(shard, plan, scenario.seed, client, server_round, defense)
    generator = noise_generator(scenario.seed, client, server_round)
    # Defenses that transform the finished update run in the defense mod, after this handler.
    update, loss = train_update(model, [data.get_training(b) for b in batches], plan, defense, generator, len(shard))
    public = _public_metadata(scenario, client, server_round, plan, batches, len(shard))
    trained_on = [int(i) for batch in batches for i in batch]
    content = RecordDict({
        protocol.UPDATE: ArrayRecord(torch_state_dict=update),
        protocol.METRICS: MetricRecord({protocol.NUM_EXAMPLES: public.num_examples, protocol.TRAIN_LOSS: loss}),
        protocol.PUBLIC: public.to_config_record(),
        protocol.AUDIT: ConfigRecord({protocol.INDICES: trained_on}),
    })
    return Message(content=content, reply_to=msg)


def _evaluate_reply(msg: Message, data: FederatedData, client: int) -> Message:
    """Loss and accuracy of the received global model on this client's slice of the held-out set."""
    model = data.model_spec().build()
    model.load_state_dict(msg.content[protocol.SERVER_ARRAYS].to_torch_state_dict())
    model.eval()
    server_round = int(msg.content[protocol.SERVER_CONFIG]["server-round"])
    indices = data.eval_indices_of(client, server_round)
    images, labels = data.get(indices)
    loss, accuracy = evaluate_model(model, images, labels)
    metrics = {protocol.NUM_EXAMPLES: len(indices), protocol.EVAL_LOSS: loss, protocol.EVAL_ACCURACY: accuracy}
    return Message(content=RecordDict({protocol.METRICS: MetricRecord(metrics)}), reply_to=msg)


def _query_reply(msg: Message, client: int) -> Message:
    """The client's id, so the server can address the clients it samples."""
    record = ConfigRecord({protocol.CLIENT_ID: client})
    return Message(content=RecordDict({protocol.IDENTITY: record}), reply_to=msg)


def build_client_app(scenario: Scenario, base_dir: Path | None = None) -> ClientApp:
    """A ClientApp that trains as ``scenario`` says; ``base_dir`` resolves the scenario's relative data paths."""
    # Ship the scenario as JSON: the app is pickled into every Ray worker, and a string travels safely.
    scenario_json = scenario.model_dump_json()
    # The modules defining the scenario's defenses: a worker imports them, which registers a defense defined
    # outside fedleak.defenses before the scenario's JSON is validated there.
    modules = tuple(defense_modules(scenario.defenses()))

    def load() -> Scenario:
        import_defense_modules(modules)
        return scenario_from_json(scenario_json)

    app = ClientApp(mods=[make_defense_mod(scenario_json, client_id, modules)])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        scenario = load()
        return _train_reply(msg, scenario, federated_data(scenario, base_dir), client_id(context))

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        scenario = load()
        return _evaluate_reply(msg, federated_data(scenario, base_dir), client_id(context))

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        return _query_reply(msg, client_id(context))

    return app
