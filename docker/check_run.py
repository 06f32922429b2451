"""Check a run directory written by the containerised federation against its scenario and a reference run.

    python docker/check_run.py RUN_DIR SCENARIO REFERENCE_DIR

RUN_DIR must hold what ``fedleak deploy`` writes for the scenario: a clean ``deploy_status.json``, a rounds.csv row
for every round in which every client took part, a leakage.csv row for every (attack, round, client) the scenario
schedules, the figures and report.html. Its training columns must equal those of REFERENCE_DIR, the same scenario
and seed run by ``fedleak deploy`` as processes. Prints one line per problem and exits 1 when there is any.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from fedleak.drivers.scenarios import load_scenario

#: rounds.csv columns that depend only on the scenario and its seed (not on timing or attack progress).
TRAINING_COLUMNS = ("round", "loss", "accuracy", "train_loss", "clients", "participants", "eval_clients")


def rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def scheduled(attack, rounds: int, clients: int) -> set[tuple[int, int]]:
    """(round, client) pairs the attack is scheduled on (rounds are 1-based, as in leakage.csv)."""
    on_rounds = range(1, rounds + 1) if attack.rounds == "all" else attack.rounds
    on_clients = range(clients) if attack.clients == "all" else attack.clients
    return {(r, c) for r in on_rounds for c in on_clients}


def problems(run_dir: Path, scenario_path: Path, reference: Path) -> list[str]:
    scenario = load_scenario(scenario_path)
    n_rounds, n_clients = scenario.training.rounds, scenario.clients.count
    found = []
    status_path = run_dir / "deploy_status.json"
    if not status_path.is_file():
        found.append(f"{status_path} is missing: the ServerApp did not finish")
    else:
        found += [f"the ServerApp reports: {p}" for p in json.loads(status_path.read_text()).get("problems", [])]

    round_rows = rows(run_dir / "rounds.csv")
    everyone = " ".join(str(c) for c in range(n_clients))
    by_round = {int(row["round"]): row for row in round_rows}
    for r in range(1, n_rounds + 1):
        if r not in by_round:
            found.append(f"rounds.csv has no row for round {r}")
        elif by_round[r]["participants"] != everyone:
            found.append(f"rounds.csv round {r}: participants {by_round[r]['participants']!r}, expected {everyone!r}")

    attacked = {(row["attack"], int(row["round"]), int(row["client"])) for row in rows(run_dir / "leakage.csv")}
    for attack in scenario.attacks:
        if attack.sample is not None or attack.count is not None:
            if not any(name == attack.name for name, _, _ in attacked):  # a random subset: check it ran at all
                found.append(f"leakage.csv has no row for {attack.name}")
            continue
        missing = sorted(scheduled(attack, n_rounds, n_clients) - {(r, c) for name, r, c in attacked
                                                                    if name == attack.name})
        if missing:
            found.append(f"leakage.csv lacks {attack.name} on (round, client) {missing}")

    figures = sorted((run_dir / "figures").glob("*.png"))
    if not figures:
        found.append(f"no figures in {run_dir / 'figures'}")
    if not (run_dir / "report.html").is_file():
        found.append("report.html is missing")

    ours = [tuple(row[k] for k in TRAINING_COLUMNS) for row in round_rows]
    theirs = [tuple(row[k] for k in TRAINING_COLUMNS) for row in rows(reference / "rounds.csv")]
    if not theirs:
        found.append(f"the reference run {reference} has no rounds.csv")
    elif ours != theirs:
        found.append(f"training rows differ from fedleak deploy's ({', '.join(TRAINING_COLUMNS)}): {ours} != {theirs}")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    run_dir, scenario, reference = (Path(a) for a in argv)
    found = problems(run_dir, scenario, reference)
    for line in found:
        print(f"compose-test: check: {line}", file=sys.stderr)
    if not found:
        n = len(rows(run_dir / "leakage.csv"))
        print(f"compose-test: check: {run_dir.name}: every round and client, {n} leakage rows, figures and "
              "report.html; training rows equal fedleak deploy's")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
