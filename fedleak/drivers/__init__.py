"""The drivers: modules that run things (simulation, deployment, defense arms, audits, reproductions, the command
line) and the scenario's name checks against the registries. They sit on top: nothing below imports them."""
