"""``fedleak validate FILE [--set KEY=VALUE ...]``: exit 0 when the scenario is valid, else one line and exit 2."""

from fedleak.drivers.cli.scenario_args import add_set_option, load_with_overrides


def add_parser(sub) -> None:
    p = sub.add_parser("validate", help="check a scenario file")
    p.add_argument("file", help="scenario YAML, e.g. scenarios/hospitals.yaml")
    add_set_option(p)
    p.set_defaults(run=run)


def run(args) -> int:
    scenario = load_with_overrides(args.file, args.overrides)
    print(f"{args.file}: valid ({scenario.clients.count} clients, {scenario.training.rounds} rounds, "
          f"{len(scenario.attacks)} attacks" + (f", {len(scenario.arms)} arms" if scenario.arms else "") + ")")
    return 0
