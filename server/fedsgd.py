"""FedSGD (McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks from Decentralized Data",
arXiv 1602.05629, the B-batch, one-step baseline): clients send one-batch gradients; the server applies their
``num-examples``-weighted mean, ``w ← w − lr·ḡ``.

Flower ships FedAvg, which averages whatever arrays the clients send; averaging gradients and stepping is the only
difference, so this strategy reuses FedAvg's sampling, validation and weighted mean and adds the step.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg


class FedSGD(FedAvg):
    """FedAvg's weighted mean applied to gradients, followed by one server SGD step with rate ``lr``.

    Args:
        lr: the server's step size on the averaged gradient.
        **fedavg_kwargs: passed to :class:`flwr.serverapp.strategy.FedAvg` (sampling, keys, metric aggregation).
    """

    def __init__(self, lr: float, **fedavg_kwargs):
        super().__init__(**fedavg_kwargs)
        if lr <= 0:
            raise ValueError(f"FedSGD needs a positive learning rate, got {lr}")
        self.lr = lr
        self._current: ArrayRecord | None = None

    def __repr__(self) -> str:
        return f"FedSGD(lr={self.lr})"

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        # The step needs the weights the gradients were taken at: remember what was sent.
        self._current = arrays
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        mean_gradient, metrics = super().aggregate_train(server_round, replies)
        if mean_gradient is None:
            return None, metrics
        if self._current is None:
            raise RuntimeError("FedSGD.aggregate_train called before configure_train: no weights to step from")
        return apply_gradient(self._current, mean_gradient, self.lr), metrics


def apply_gradient(weights: ArrayRecord, gradient: ArrayRecord, lr: float) -> ArrayRecord:
    """``w − lr·g`` for every array of ``gradient``; arrays without a gradient (buffers) are kept as they are."""
    unknown = set(gradient.keys()) - set(weights.keys())
    if unknown:
        raise ValueError(f"gradient has arrays the model does not: {sorted(unknown)}")
    stepped = {}
    for name, array in weights.items():
        w = array.numpy()
        if name in gradient:
            w = (w - lr * gradient[name].numpy()).astype(w.dtype, copy=False)
        stepped[name] = Array(np.asarray(w))
    return ArrayRecord(stepped)
