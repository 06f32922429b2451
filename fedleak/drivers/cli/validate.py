"""``fedleak validate FILE``: exit 0 when the scenario is valid, else one line and exit 2."""

from fedleak.drivers.scenarios import load_scenario


def add_parser(sub) -> None:
    p = sub.add_parser("validate", help="check a scenario file")
    p.add_argument("file")
    p.set_defaults(run=run)


def run(args) -> int:
    scenario = load_scenario(args.file)
    print(f"{args.file}: valid ({scenario.clients.count} clients, {scenario.training.rounds} rounds, "
          f"{len(scenario.attacks)} attacks" + (f", {len(scenario.arms)} arms" if scenario.arms else "") + ")")
    return 0
