"""Client sampling: each round only the clients :func:`fedleak.participation.sampled_clients` draws get to train.

Flower's ``fraction_train`` samples node ids with its own unseeded generator, and a node id says nothing about which
hospital it is. So this wrapper asks every node once who it is (a ``query`` message; the ClientApp answers with its
partition id, as a real server knows which site a node belongs to), then lets the wrapped strategy address every
node and keeps only the train messages for the round's draw — reproducible from (seed, round), identical on the
simulation and the deployment engine, and the same draw the clients use for their privacy accounting.
The same clients evaluate the round's model, each on its share of the held-out set, so a federation of thousands
sends a round's messages to ``per_round`` nodes only.
"""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedleak import protocol
from fedleak.participation import sampled_clients

#: Seconds to wait for every node to say who it is.
QUERY_TIMEOUT_S = 600.0


def client_directory(grid: Grid) -> dict[int, int]:
    """``{node id: client id}`` for every connected node, asked once with a query message."""
    messages = [Message(content=RecordDict(), message_type=MessageType.QUERY, dst_node_id=node)
                for node in grid.get_node_ids()]
    directory = {}
    for reply in grid.send_and_receive(messages, timeout=QUERY_TIMEOUT_S):
        if reply.has_error():
            raise RuntimeError(f"node {reply.metadata.src_node_id} did not say which client it is: {reply.error}")
        directory[reply.metadata.src_node_id] = int(reply.content[protocol.IDENTITY][protocol.CLIENT_ID])
    if len(directory) != len(messages):
        raise RuntimeError(f"only {len(directory)} of {len(messages)} nodes said which client they are")
    return directory


class SampledStrategy(Strategy):
    """Wrap ``strategy`` (configured to address every node) so that only ``per_round`` clients train each round.

    Args:
        strategy: the real strategy; its ``configure_train`` must address every node (``fraction_train=1``).
        count: registered clients; the run waits for all of them before the first round.
        per_round: clients drawn per round.
        seed: the scenario's seed.
    """

    def __init__(self, strategy: Strategy, count: int, per_round: int, seed: int):
        super().__init__()
        self.strategy = strategy
        self.count, self.per_round, self.seed = count, per_round, seed
        self._directory: dict[int, int] | None = None

    def __repr__(self) -> str:
        return f"SampledStrategy({self.strategy!r}, {self.per_round} of {self.count} per round)"

    def summary(self) -> None:
        self.strategy.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self._only_sampled(self.strategy.configure_train(server_round, arrays, config, grid), server_round,
                                  grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return self.strategy.aggregate_train(server_round, replies)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        # The round's sampled clients also evaluate, each on its share of the held-out set (fedleak/federated_data.py).
        return self._only_sampled(self.strategy.configure_evaluate(server_round, arrays, config, grid),
                                  server_round, grid)

    def _only_sampled(self, messages: Iterable[Message], server_round: int, grid: Grid) -> list[Message]:
        messages = list(messages)
        if self._directory is None:
            self._directory = client_directory(grid)
        chosen = set(sampled_clients(self.count, self.per_round, self.seed, server_round))
        return [m for m in messages if self._directory.get(m.metadata.dst_node_id) in chosen]

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)
