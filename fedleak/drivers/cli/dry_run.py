"""``fedleak simulate --dry-run``: what a scenario would run — rounds, clients per round, scheduled attacks — without
loading data, starting Flower or writing anything."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from fedleak.config.schema import Scenario


def _counts(names: list[str]) -> str:
    return ", ".join(f"{name} {n}" for name, n in Counter(names).items()) or "none"


def describe(scenario: Scenario, run_dir: Path, executor: str | None) -> list[str]:
    """The lines ``--dry-run`` prints for ``scenario`` (one federation, or every arm of it)."""
    # lazy (start-up): loads only when this command runs, not for every command's parser
    from fedleak.server.schedule import planned_attacks

    t, clients = scenario.training, scenario.clients
    per_round = min(clients.per_round or clients.count, clients.count)
    plan = planned_attacks(scenario)
    lines = [
        f"scenario: {scenario.name} (seed {scenario.seed}, device {scenario.device})",
        f"run directory: {run_dir}",
        f"model: {t.model} on {scenario.data.dataset} ({scenario.data.source}); update: {t.update}, batch size "
        f"{t.batch_size}, lr {t.lr:g}; defense: {t.defense.kind}"
        + (f"; {len(clients.overrides)} client override(s)" if clients.overrides else "")
        + ("; secure aggregation (attacks see each round's aggregate)" if t.secure_aggregation else ""),
        f"rounds: {t.rounds}; clients: {clients.count} registered, {per_round} per round",
        f"attacks: {executor or scenario.executor.kind} executor, {len(plan)} scheduled in all "
        f"({_counts([name for _, _, name in plan])})",
    ]
    for server_round in range(1, t.rounds + 1):
        names = [name for r, _, name in plan if r == server_round]
        targets = sorted({c for r, c, _ in plan if r == server_round})
        shown = "the aggregate" if targets == [-1] else f"clients {_ranges(targets)}" if targets else "no update"
        lines.append(f"  round {server_round}: {len(names)} ({_counts(names)}) on {shown}")
    if any(a.max_images for a in scenario.attacks) and t.update == "epochs":
        lines.append("  epoch updates cover a client's whole shard: those over an attack's max_images become "
                     "'skipped' rows")
    if scenario.arms:
        # lazy (start-up): loads only when this command runs, not for every command's parser
        from fedleak.drivers.arms import plan as plan_arms

        arms = plan_arms(scenario, run_dir)
        lines.append(f"arms: {len(arms)} federations one after another (the schedule above with each arm's "
                     f"training), {sum(len(planned_attacks(arm.scenario)) for arm in arms)} attacks in all:")
        lines += [f"  {arm.name}: defense {arm.scenario.training.defense.kind}, {arm.scenario.training.rounds} "
                  f"rounds, {len(planned_attacks(arm.scenario))} attacks → {arm.run_dir}" for arm in arms]
    return lines


def _ranges(ids: list[int], most: int = 12) -> str:
    """``[0, 1, 2, 5]`` → ``0-2, 5``; beyond ``most`` parts, the first ones and how many clients in all."""
    parts, start = [], None
    for i, value in enumerate(ids):
        if start is None:
            start = value
        if i + 1 == len(ids) or ids[i + 1] != value + 1:
            parts.append(str(start) if start == value else f"{start}-{value}")
            start = None
    if len(parts) > most:
        return f"{', '.join(parts[:most])}, … ({len(ids)} clients)"
    return ", ".join(parts)
