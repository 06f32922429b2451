"""The Flower ClientApp (Message API): one hospital that trains on one batch per round.

``train``: receive the global weights and the round number, draw this round's batch from the client's shard
(reproducibly from seed, client and round), compute the update (FedSGD gradient or K local SGD steps, the
scenario's per-client settings; DP-SGD when that is the client's defense), reply with the update, ``num-examples``,
public metadata and the audit record. The defense mod then transforms the update when the client's defense says so.
``evaluate``: loss and accuracy of the global model on this client's slice of the held-out set.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedleak.clients import protocol
from fedleak.clients.defense_mod import make_defense_mod
from fedleak.clients.defenses import defense_label, noise_generator
from fedleak.clients.dp_sgd import dp_epsilon, dp_sgd_update
from fedleak.clients.local_training import compute_update, evaluate_model
from fedleak.clients.shards import federated_data
from fedleak.config.schema import Scenario


def client_id(context: Context) -> int:
    """The client's index: the simulation's partition id (the deployment engine sets it via --node-config)."""
    return int(context.node_config["partition-id"])


def build_client_app(scenario: Scenario, base_dir: Path | None = None) -> ClientApp:
    """A ClientApp that trains as ``scenario`` says; ``base_dir`` resolves the scenario's relative data paths."""
    # Ship the scenario as JSON: the app is pickled into every Ray worker, and a string travels safely.
    scenario_json = scenario.model_dump_json()
    app = ClientApp(mods=[make_defense_mod(scenario_json, client_id)])

    def _scenario() -> Scenario:
        return Scenario.model_validate_json(scenario_json)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        scenario = _scenario()
        client = client_id(context)
        server_round = int(msg.content[protocol.SERVER_CONFIG]["server-round"])
        data = federated_data(scenario, base_dir)
        model = data.model_spec().build()
        model.load_state_dict(msg.content[protocol.SERVER_ARRAYS].to_torch_state_dict())
        batch_size, local_steps, lr = scenario.client_settings(client)
        indices = data.batch_indices(client, server_round)
        images, labels = data.get(indices)
        kind = scenario.training.update
        defense = scenario.client_defense(client)
        public = {}
        if defense.kind == "dp_sgd":
            generator = noise_generator(scenario.seed, client, server_round)
            update, loss = dp_sgd_update(model, images, labels, kind, local_steps, lr, defense, generator)
            steps_so_far = server_round * (local_steps if kind == "local_steps" else 1)
            public["dp_epsilon"] = dp_epsilon(defense, len(indices) / len(data.shards[client]), steps_so_far)
        else:
            # Defenses that transform the finished update run in the defense mod, after this handler.
            update, loss = compute_update(model, images, labels, kind, local_steps, lr)
        content = RecordDict(
            {
                protocol.UPDATE: ArrayRecord(torch_state_dict=update),
                protocol.METRICS: MetricRecord({protocol.NUM_EXAMPLES: len(indices), protocol.TRAIN_LOSS: loss}),
                protocol.PUBLIC: ConfigRecord(
                    {
                        "client": client,
                        "round": server_round,
                        "update_kind": kind,
                        "batch_size": len(indices),
                        "local_steps": local_steps if kind == "local_steps" else 1,
                        "lr": lr,
                        "defense": defense_label(defense),
                        **public,
                    }
                ),
                protocol.AUDIT: ConfigRecord({protocol.INDICES: [int(i) for i in indices]}),
            }
        )
        return Message(content=content, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        scenario = _scenario()
        data = federated_data(scenario, base_dir)
        model = data.model_spec().build()
        model.load_state_dict(msg.content[protocol.SERVER_ARRAYS].to_torch_state_dict())
        model.eval()
        indices = data.eval_indices_of(client_id(context))
        images, labels = data.get(indices)
        loss, accuracy = evaluate_model(model, images, labels)
        metrics = {protocol.NUM_EXAMPLES: len(indices), protocol.EVAL_LOSS: loss, protocol.EVAL_ACCURACY: accuracy}
        return Message(content=RecordDict({protocol.METRICS: MetricRecord(metrics)}), reply_to=msg)

    return app
