"""The Flower ServerApp: FedSGD or FedAvg, wrapped by the interceptor that copies every reply to the attacks.

The ServerApp's main runs in a thread of the process that owns Flower's Ray cluster; the attack executor and the
result writer live in this process too. Before main returns every attack is drained, because Flower shuts Ray down
right after.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, Strategy

from fedleak import protocol
from fedleak.config.schema import Scenario
from fedleak.errors import UserError
from fedleak.safe_load import load_state_dict
from fedleak.server.fedsgd import FedSGD
from fedleak.server.grid import StoppableGrid
from fedleak.server.interceptor import InterceptingStrategy, ReplyTap
from fedleak.server.sampling import SampledStrategy
from fedleak.types import ModelSpec


def initial_weights(scenario: Scenario, spec: ModelSpec, base_dir: Path | None = None) -> dict[str, torch.Tensor]:
    """The global model of round 1, reproducible from the scenario's seed.

    ``paper``: the model's own initialisation (DLG's uniform(−0.5, 0.5) for lenet); ``default``: PyTorch's
    ``reset_parameters``; ``checkpoint``: a state_dict file (relative paths from the scenario's folder).
    """
    torch.manual_seed(scenario.seed)
    model = spec.build()
    training = scenario.training
    if training.init == "default":
        for module in model.modules():
            if module is not model and hasattr(module, "reset_parameters"):
                module.reset_parameters()
    elif training.init == "checkpoint":
        path = Path(training.checkpoint or "")
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path

        if not path.is_file():
            raise UserError(f"training.checkpoint: no such file {path}; give the path of a saved state_dict")
        load_checkpoint(model, path, "training.checkpoint")
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def load_checkpoint(model: torch.nn.Module, path: Path, field: str) -> None:
    """Load a state_dict file into ``model``; a file that does not fit it is one UserError naming ``field``."""
    state = load_state_dict(path, field)
    try:
        model.load_state_dict(state)
    except (RuntimeError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{field}: {path} does not fit the model {type(model).__name__}: {first}") from None


def base_strategy(scenario: Scenario, evaluate: bool) -> Strategy:
    """FedSGD for one-batch gradients, FedAvg for local steps and epochs; every client evaluates each round, and
    trains each round unless ``clients.per_round`` samples them (then :class:`SampledStrategy` picks who trains)."""
    count = scenario.clients.count
    common = {
        "fraction_train": 1.0,
        "fraction_evaluate": 1.0 if evaluate else 0.0,
        "min_train_nodes": count,
        "min_evaluate_nodes": count if evaluate else 0,
        "min_available_nodes": count,
        "weighted_by_key": protocol.NUM_EXAMPLES,
        "arrayrecord_key": "arrays",
        "configrecord_key": "config",
    }
    strategy = FedSGD(lr=scenario.training.lr, **common) if scenario.training.update == "gradient" else FedAvg(**common)
    per_round = scenario.clients.per_round
    if per_round is not None and per_round < count:
        strategy = SampledStrategy(strategy, count, per_round, scenario.seed)
    return strategy


def save_checkpoint(folder: Path, server_round: int, arrays: ArrayRecord) -> Path:
    """The global weights after ``server_round`` (0: the initial model) as a state_dict file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"round_{server_round:03d}.pt"
    torch.save(arrays.to_torch_state_dict(), path)
    return path


def build_server_app(
    scenario: Scenario,
    weights: dict[str, torch.Tensor],
    tap: ReplyTap | None,
    on_finish: Callable[[], None] | None = None,
    round_times: list[float] | None = None,
    evaluate: bool = True,
    stop: threading.Event | None = None,
    checkpoints: Path | None = None,
) -> ServerApp:
    """A ServerApp that runs the scenario's rounds.

    Args:
        scenario: the run's scenario.
        weights: the initial global model.
        tap: the observer of replies (``None``: no interception, the plain strategy).
        on_finish: called when the rounds are over, even after an error (drain the attacks there).
        round_times: if given, a ``time.perf_counter()`` stamp is appended at the start and after every round.
        evaluate: federated evaluation on the held-out slices each round.
        stop: once set (Ctrl-C), the ServerApp gives up waiting for nodes and replies and returns.
        checkpoints: if given, the global weights are saved there after every round (``round_NNN.pt``).
    """
    app = ServerApp()

    def stamp(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        # Flower calls this with the initial model (round 0) and after every round's aggregation.
        if round_times is not None:
            round_times.append(time.perf_counter())
        if checkpoints is not None:
            save_checkpoint(checkpoints, server_round, arrays)
        return None

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = base_strategy(scenario, evaluate)
        if tap is not None:
            strategy = InterceptingStrategy(strategy, tap)
        if stop is not None:
            grid = StoppableGrid(grid, stop)
        try:
            strategy.start(
                grid=grid,
                initial_arrays=ArrayRecord(torch_state_dict=weights),
                num_rounds=scenario.training.rounds,
                train_config=ConfigRecord(),
                evaluate_config=ConfigRecord(),
                evaluate_fn=stamp,
            )
        finally:
            if on_finish is not None:
                on_finish()

    return app
