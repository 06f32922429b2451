"""A strategy wrapper that shows every reply to a tap before the wrapped strategy aggregates it, unchanged.

Shaped like Flower's own DP wrappers (``flwr/serverapp/strategy/dp_fixed_clipping.py``): remember what was sent in
``configure_train``, look at the replies in ``aggregate_train``, then delegate. Unlike those wrappers it never
modifies a reply: the server is honest (it aggregates exactly what it received) but curious (it keeps a copy).
"""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy


class ReplyTap:
    """What the curious server does with what it sees. Subclasses override any of these; the base ignores all.

    A tap must only read the messages: the interceptor hands the very same objects to the aggregator.
    """

    def on_train_replies(self, server_round: int, sent: ArrayRecord, replies: list[Message]) -> None:
        """Called with every train reply of a round, before aggregation; ``sent`` is the global model sent."""

    def on_train_aggregated(self, server_round: int, metrics: MetricRecord | None) -> None:
        """Called after the wrapped strategy aggregated the round's train replies."""

    def on_evaluate(self, server_round: int, metrics: MetricRecord | None, replies: list[Message]) -> None:
        """Called after the wrapped strategy aggregated the round's evaluation replies."""


class InterceptingStrategy(Strategy):
    """Wrap ``strategy`` so that ``tap`` sees each round's replies first.

    Args:
        strategy: the real strategy (FedAvg, FedSGD, …) that aggregates.
        tap: the observer of the replies.
    """

    def __init__(self, strategy: Strategy, tap: ReplyTap):
        super().__init__()
        self.strategy = strategy
        self.tap = tap
        self._sent: dict[int, ArrayRecord] = {}

    def __repr__(self) -> str:
        return f"InterceptingStrategy({self.strategy!r})"

    def summary(self) -> None:
        self.strategy.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        # Only the current round's weights are needed; keep no older ones (they can be large).
        self._sent = {server_round: arrays}
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        # Replies may be a one-shot iterator: materialise once, so the tap and the aggregator see the same list.
        replies = list(replies)
        sent = self._sent.get(server_round)
        if sent is None:
            raise RuntimeError(f"round {server_round}: aggregate_train before configure_train; nothing was sent")
        self.tap.on_train_replies(server_round, sent, replies)
        arrays, metrics = self.strategy.aggregate_train(server_round, replies)
        self.tap.on_train_aggregated(server_round, metrics)
        return arrays, metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        replies = list(replies)
        metrics = self.strategy.aggregate_evaluate(server_round, replies)
        self.tap.on_evaluate(server_round, metrics, replies)
        return metrics
