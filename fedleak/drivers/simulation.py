"""Run a scenario on Flower's simulation engine (Ray) and write its run directory.

Why ``flwr.simulation.run_simulation`` and not ``flwr run``: in Flower 1.41 ``flwr run`` starts a detached
``flower-superlink --simulation`` that keeps running after the run with no command to stop it, needs a
``$FLWR_HOME/config.toml``, installs the app's dependencies per run unless told not to, and accepts only flat
run-config values (so a scenario could travel only as a file path). ``run_simulation`` runs the same simulation
runtime in this process, takes the ServerApp/ClientApp objects built from the validated scenario, and lets the
attack executor and the result writer live beside the ServerApp. It is marked deprecated in favour of ``flwr run``;
:func:`launch_flower` is the only place that calls it, so switching later touches one function.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fedleak.clients.app import build_client_app
from fedleak.config.schema import Scenario
from fedleak.defaults import run_dir_for
from fedleak.devices import resolve_device
from fedleak.federated_data import FederatedData
from fedleak.loopback import ray_init_loopback_args, ray_loopback_env
from fedleak.participation import sampled_clients
from fedleak.provenance import collect
from fedleak.quiet import configure_logging
from fedleak.report import RunWriter, build_report
from fedleak.runtime import make_executor
from fedleak.runtime.cluster import check_resource, cluster_address, connect
from fedleak.server.app import build_server_app, initial_weights
from fedleak.server.canary_audit import CanaryAudit
from fedleak.server.leakage import LeakageTap
from fedleak.server.membership import MembershipWatch
from fedleak.server.progress import RunProgress
from fedleak.server.schedule import planned_attacks
from fedleak.signals import is_interrupt, quiet_flower


class _DropKnownNotices(logging.Filter):
    """Hide Flower warnings about choices made on purpose: run_simulation is deprecated (see the module docstring);
    evaluation is skipped when a scenario holds out no images (the run's rounds.csv says so with empty columns)."""

    _NOTICES = ("run_simulation", "Federated evaluation will be skipped")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(notice in message for notice in self._NOTICES)


def launch_flower(
    server_app: Any, client_app: Any, num_clients: int, *, verbose: bool = False, ray_temp_dir: Path | None = None,
    resources: dict[str, float] | None = None,
) -> None:
    """Run ``server_app`` against ``num_clients`` simulated ClientApps on Flower's Ray simulation engine.

    ``resources``: custom resources the local Ray instance offers (the attackers'); ignored when this process is
    already connected to a cluster (``executor.address``), whose nodes declare their own.
    """
    configure_logging(verbose)
    # lazy (start-up): Flower's simulation engine imports Ray; the deployment ServerApp loads this module without it
    from flwr.simulation import run_simulation
    from flwr.supercore.logger import FLOWER_LOGGER, update_console_handler

    update_console_handler(level=logging.INFO if verbose else logging.WARNING)
    notice_filter = _DropKnownNotices()
    if not verbose:
        FLOWER_LOGGER.addFilter(notice_filter)
    init_args: dict[str, Any] = {"include_dashboard": False}
    # Flower's ray.init starts a Ray of our own when none is joined yet: keep it on 127.0.0.1.
    init_args.update(ray_init_loopback_args(init_args))
    if not verbose:
        init_args.update(logging_level="ERROR", log_to_driver=False)
    if ray_temp_dir is not None:
        init_args["_temp_dir"] = str(Path(ray_temp_dir).resolve())
    if resources:
        init_args["resources"] = dict(resources)
    backend_config = {
        # One CPU per client lets two clients train at once on two cores. Clients never take a GPU share: the
        # attacker actors get the GPU (clients holding a share left the attackers none: they never started).
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": init_args,
    }
    try:
        run_simulation(server_app=server_app, client_app=client_app, num_supernodes=num_clients,
                       backend_config=backend_config, verbose_logging=verbose)
    finally:
        FLOWER_LOGGER.removeFilter(notice_filter)


@dataclass
class SimulationResult:
    """What a run produced and whether it is complete."""

    run_dir: Path | None
    problems: list[str] = field(default_factory=list)
    round_times: list[float] = field(default_factory=list)
    attacks_finished: int = 0
    attacks_failed: int = 0
    attacks_skipped: int = 0
    seconds: float = 0.0
    #: Seconds from the start of round 1 until the last attack was scored (training and attacks, no startup).
    work_seconds: float | None = None
    #: Seconds spent in the interceptor's tap (observations, submissions, scoring).
    tap_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def seconds_per_round(self) -> list[float]:
        """Wall time of each round (training, aggregation, evaluation, and the in-process attacks)."""
        return [b - a for a, b in zip(self.round_times, self.round_times[1:], strict=False)]


def simulate(
    scenario: Scenario,
    *,
    run_dir: Path | None = None,
    base_dir: Path | None = None,
    executor: Literal["local", "ray"] | None = None,
    report: bool = True,
    verbose: bool = False,
    progress: bool = True,
    ray_temp_dir: Path | None = None,
) -> SimulationResult:
    """Run ``scenario`` through Flower's simulation and write its run directory.

    Args:
        scenario: a validated scenario.
        run_dir: output directory (default: ``scenario.output.dir`` or ``runs/<name>-<timestamp>``).
        base_dir: folder that relative data/checkpoint paths are resolved from (the scenario file's folder).
        executor: ``local`` or ``ray``; default: ``scenario.executor.kind`` (``auto`` → ``ray``).
        report: build figures and report.html at the end.
        verbose: show Flower's and Ray's logs.
        progress: show the progress display.
        ray_temp_dir: Ray's temp folder (Ray keeps a ``session_*`` folder per start there).

    Returns:
        The result; ``result.problems`` lists what makes the run incomplete (missing rounds or replies).
    """
    attacks_on_ray = bool(scenario.attacks) and (executor or scenario.executor.kind) != "local"

    def prepare() -> ServerSide:
        return ServerSide.prepare(scenario, run_dir=run_dir, base_dir=base_dir, executor=executor, progress=progress)

    return run_on_flower(scenario, prepare, base_dir=base_dir, attacks_on_ray=attacks_on_ray, verbose=verbose,
                         ray_temp_dir=ray_temp_dir, report=report)


def run_on_flower(
    scenario: Scenario, prepare: Callable[[], ServerSide], *, base_dir: Path | None, attacks_on_ray: bool,
    verbose: bool = False, ray_temp_dir: Path | None = None, report: bool = True,
) -> SimulationResult:
    """Join or start Ray, build the server side with ``prepare`` (after Ray is up: its executor may be a Ray pool),
    run the federation on Flower's simulation engine, and return what it produced. :func:`simulate` is the usual
    caller; benchmarks call it with a server side prepared without attacks, interception or output."""
    # A Ray instance of our own keeps its node address on 127.0.0.1 (Ray otherwise listens on every interface);
    # read when ray is first imported, so it takes effect from the command line. See fedleak/loopback.py.
    os.environ.update(ray_loopback_env(cluster_address(scenario.executor.address)))
    configure_logging(verbose)

    resources = _join_cluster(scenario, attacks_on_ray)
    try:
        server = prepare()
        client_app = build_client_app(scenario, base_dir)
        with server.display:
            try:
                launch_flower(server.server_app(), client_app, scenario.clients.count, verbose=verbose,
                              ray_temp_dir=ray_temp_dir, resources=resources)
            except BaseException as exc:
                # Ctrl-C (or a crash) in the simulation engine: let the ServerApp thread end, or the process hangs.
                server.stop.set()
                server.record_end("interrupted" if is_interrupt(exc) else "failed")
                if is_interrupt(exc):
                    quiet_flower()
                raise
    finally:
        _leave_cluster()
    return server.result(report=report)


def _join_cluster(scenario: Scenario, attacks_on_ray: bool) -> dict[str, float] | None:
    """Connect to ``executor.address`` (or RAY_ADDRESS) when set and check it offers the attackers' resource;
    on a local run, the custom resource the local Ray instance must offer instead."""
    ex = scenario.executor
    address = cluster_address(ex.address)
    if address is None:
        return {ex.resource: ex.workers} if attacks_on_ray else None
    connect(address)
    if attacks_on_ray:
        check_resource(ex.resource, address)
    return None


def _leave_cluster() -> None:
    """Disconnect from Ray if still connected (Flower normally has): ``ray.shutdown()`` in a driver that joined a
    cluster only disconnects it, and a Ray instance Flower started is already gone."""
    # lazy (start-up): Ray takes seconds to import; only Ray runs need it
    import ray

    if ray.is_initialized():
        ray.shutdown()


@dataclass
class ServerSide:
    """Everything that lives beside the ServerApp: data (for scoring), initial weights, the run writer, the attack
    executor and the interceptor's tap. Shared by the simulation engine (:func:`simulate`) and the deployment
    engine (``fedleak.drivers.deploy_app``), so both write the same run directory."""

    scenario: Scenario
    run_dir: Path | None
    data: Any
    weights: dict[str, Any]
    pool: Any
    tap: Any
    display: Any
    evaluate: bool
    start: float
    round_times: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    drained_at: list[float] = field(default_factory=list)
    writer: Any = None
    #: run.json's record (fedleak.provenance), rewritten with the end time and status once the run ends.
    record: Any = None

    @classmethod
    def prepare(
        cls,
        scenario: Scenario,
        *,
        run_dir: Path | None = None,
        base_dir: Path | None = None,
        executor: Literal["local", "ray"] | None = None,
        attacks: bool = True,
        intercept: bool = True,
        write: bool = True,
        progress: bool = True,
        kind: str = "simulate",
    ) -> ServerSide:
        """Load the data, seed the global model, open the run directory and start the attack executor."""
        start = time.perf_counter()
        data = FederatedData(scenario, base_dir=base_dir)
        data.check_batches()
        data.check_candidates()
        data.check_canaries()
        spec = data.model_spec()
        weights = initial_weights(scenario, spec, base_dir)
        writer = record = None
        if write:
            run_dir = run_dir_for(run_dir, scenario.output.dir, scenario.name)
            writer = RunWriter(run_dir)
            record = collect(kind, seed=scenario.seed, device=scenario.device, scenario=scenario.name)
            writer.write_run_record(record)
            writer.write_scenario(scenario)
        kind = executor or ("local" if scenario.executor.kind == "local" else "ray")
        pool = None
        if attacks and scenario.attacks:
            ex = scenario.executor
            pool = make_executor(kind, device=scenario.device, seed=scenario.seed, timeout_s=ex.timeout_s,
                                 max_in_flight=ex.max_in_flight, workers=ex.workers, resource=ex.resource,
                                 gpus_per_attack=ex.gpus_per_attack)
        # With clients.per_round, only that many clients train and evaluate in a round.
        training_clients = min(scenario.clients.per_round or scenario.clients.count, scenario.clients.count)

        scheduled = len(planned_attacks(scenario)) if attacks and intercept else None
        display = RunProgress(scenario.training.rounds, training_clients, enabled=progress, scheduled=scheduled)
        membership, audit = _watches(scenario, data, writer) if attacks and intercept else (None, None)
        tap = (LeakageTap(scenario, spec, data.get, pool, writer=writer, progress=display, dataset=data.images,
                          membership=membership, audit=audit) if intercept else None)
        return cls(scenario=scenario, run_dir=run_dir if write else None, data=data, weights=weights, pool=pool,
                   tap=tap, display=display, evaluate=len(data.eval_indices) >= training_clients, start=start,
                   writer=writer, record=record)

    def record_end(self, status: str) -> None:
        """Rewrite run.json with the end time and ``status`` (complete, incomplete, interrupted, failed), once."""
        if self.record is not None and self.writer is not None:
            self.writer.write_run_record(self.record.finished(status))
            self.record = None

    def finish(self) -> None:
        """Collect every attack before the ServerApp returns: Flower shuts Ray down right after.
        After Ctrl-C the rows written so far are kept and nothing more is awaited."""
        try:
            if self.tap is not None and not self.stop.is_set():
                self.tap.drain()
            self.drained_at.append(time.perf_counter())
        finally:
            if self.pool is not None:
                self.pool.close()
            if self.tap is not None and self.tap.membership is not None:
                self.tap.membership.close()

    def server_app(self) -> Any:
        """The scenario's ServerApp, intercepted by this side's tap; it drains the attacks before returning."""
        checkpoints = None
        if self.scenario.output.checkpoints and self.run_dir is not None:
            checkpoints = self.run_dir / "checkpoints"
        return build_server_app(self.scenario, self.weights, self.tap, on_finish=self.finish,
                                round_times=self.round_times, evaluate=self.evaluate, stop=self.stop,
                                checkpoints=checkpoints)

    def result(self, report: bool = True) -> SimulationResult:
        """What the run produced, whether it is complete, and (``report``) figures and report.html."""
        result = SimulationResult(run_dir=self.run_dir, round_times=self.round_times,
                                  seconds=time.perf_counter() - self.start)
        if self.round_times and self.drained_at:
            result.work_seconds = self.drained_at[0] - self.round_times[0]
        rounds = self.scenario.training.rounds
        if self.tap is not None:
            result.tap_seconds = self.tap.ledger.tap_seconds
            result.problems = check_run(self.scenario, self.tap.ledger)
            result.attacks_finished = self.tap.ledger.attacks_finished
            result.attacks_failed = self.tap.ledger.attacks_failed
            result.attacks_skipped = self.tap.ledger.attacks_skipped
        elif len(self.round_times) != rounds + 1:
            result.problems = [f"{len(self.round_times) - 1} of {rounds} rounds completed"]
        self.record_end("interrupted" if self.stop.is_set() else "complete" if result.ok else "incomplete")
        if report and self.run_dir is not None:
            build_report(self.run_dir)
        return result


def check_run(scenario: Scenario, ledger: Any) -> list[str]:
    """Flower can exit cleanly after rounds in which clients failed: check every round and reply ourselves."""
    problems = [f"client error: {reason}" for reason in ledger.reply_errors]
    clients = scenario.clients
    for server_round in range(1, scenario.training.rounds + 1):
        expected = set(sampled_clients(clients.count, clients.per_round, scenario.seed, server_round))
        got = ledger.clients_per_round.get(server_round)
        if got is None:
            problems.append(f"round {server_round}: no train replies")
        elif got != expected:
            problems.append(f"round {server_round}: no reply from clients {sorted(expected - got)}")
        if server_round not in ledger.rounds_logged:
            problems.append(f"round {server_round}: not completed (no rounds.csv row)")
    if ledger.attacks_finished != ledger.attacks_submitted:
        problems.append(f"{ledger.attacks_submitted - ledger.attacks_finished} attacks never finished")
    return problems


def _watches(scenario: Scenario, data: FederatedData, writer: Any) -> tuple[Any, Any]:
    """The server's membership watch and canary audit, each when the scenario asks for it (else None)."""
    membership = audit = None
    if scenario.membership is not None:
        # Members are looked up as the client trained on them (a mislabelled canary with its canary label).
        membership = MembershipWatch(scenario, data.get_training, data.eval_indices, writer,
                                     device=resolve_device(scenario.device))
    if scenario.audit is not None:
        audit = CanaryAudit(scenario, data, writer)
    return membership, audit
