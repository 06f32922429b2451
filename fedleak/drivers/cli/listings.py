"""``fedleak attacks`` and ``fedleak defenses``: every registered attack with its paper and what it assumes, every
defense with what it does, its paper and its settings.

An attack's paper and assumptions are kept here, in one table beside the registry (a registry-wide test checks every
registered attack has its line); a defense's come from its class's docstring (fedleak.defenses), its own words.
"""

from __future__ import annotations

import re
import textwrap

#: attack name → (paper, what the attacker assumes or is granted).
ATTACK_FACTS: dict[str, tuple[str, str]] = {
    "dlg": ("Zhu, Liu & Han 2019, Deep Leakage from Gradients, arXiv 1906.08935",
            "the architecture and weights; the batch size; learns soft labels jointly with the images"),
    "idlg": ("Zhao, Mopuri & Bilen 2020, iDLG, arXiv 2001.02610",
             "the architecture and weights; infers labels from the last layer's gradient, then matches the data"),
    "inverting_gradients": ("Geiping et al. 2020, Inverting Gradients, arXiv 2003.14053",
                            "the architecture and weights; cosine distance and a total-variation prior, signed Adam, "
                            "restarts"),
    "linear": ("Phong et al. 2018 (IEEE TIFS); Geiping et al. 2020, arXiv 2003.14053, Prop. D.1",
               "a first fully connected layer with bias; exact for one image, a flagged mixture for several"),
    "rconv": ("Eltaras et al. 2024, R-CONV, arXiv 2406.04227",
              "a conv net whose FC layer has a bias; per-layer linear systems in float64, one image"),
    "rgap": ("Zhu & Blaschko 2021, R-GAP, arXiv 2010.07733",
             "invertible activations; stacked gradient and forward constraints, one image"),
    "hybrid": ("Chen & Campbell 2022, BMVC, arXiv 2210.13231",
               "per-layer least squares, then gradient matching with the linear system as a soft penalty"),
    "fedavg": ("Dimitrov et al. 2022, Data Leakage in Federated Averaging, TMLR, arXiv 2206.00866",
               "an epoch update with lr, epochs and batch size granted; label counts from the update"),
    "cpa": ("Kariyappa et al. 2023, Cocktail Party Attack, ICML, arXiv 2209.05578",
            "a first fully connected layer with bias; the batch size granted (else estimated); unmixes with ICA"),
    "spear": ("Dimitrov et al. 2024, SPEAR, NeurIPS, arXiv 2403.03945",
              "a first fully connected layer with bias followed by a ReLU, its weights known; the batch size "
              "granted (else the gradient's rank)"),
}

NO_FACTS = ("(no paper listed)", "(see its module docstring)")


def plain(text: str) -> str:
    """A docstring as terminal text: one line, reST roles and literals (:mod:`x`, ``x``) shown as x."""
    text = re.sub(r":\w+:`([^`]*)`", r"\1", " ".join(text.split()))
    return text.replace("``", "")


def _wrap(label: str, text: str) -> list[str]:
    return textwrap.wrap(text, width=100, initial_indent=f"    {label:9s}", subsequent_indent=" " * 13)


def attack_lines() -> list[str]:
    """One block per registered attack: its name, paper and assumptions."""
    # lazy (start-up): loads only when this command runs, not for every command's parser
    from fedleak.attacks import ATTACKS

    lines = []
    for name in ATTACKS.names():
        paper, assumes = ATTACK_FACTS.get(name, NO_FACTS)
        lines += [name, *_wrap("paper", paper), *_wrap("assumes", assumes)]
    lines.append("Every attack sees only what a real server sees plus the scenario's threat_model grants (labels, "
                 "lr and steps, batch size); 'fedleak attack --attack NAME' runs one on one update.")
    return lines


def defense_lines() -> list[str]:
    """One block per registered defense: its kind, what it does (its paper named there) and its settings."""
    # lazy (start-up): loads only when this command runs, not for every command's parser
    from fedleak.defenses import DEFENSES

    lines = []
    for name in DEFENSES.names():
        settings = DEFENSES.get(name)
        doc = plain(settings.__doc__ or "")
        fields = {k: f.default for k, f in settings.model_fields.items() if k != "kind"}
        shown = ", ".join(f"{k}={v}" for k, v in fields.items()) or "none"
        lines += [name, *_wrap("does", doc or "(undocumented)"), *_wrap("settings", shown)]
    lines.append("Set one for every client in training.defense, per client in clients.overrides[].defense, or per arm "
                 "in arms[].defense.")
    return lines


def add_parser(sub) -> None:
    p = sub.add_parser("attacks", help="list the registered attacks with their papers and assumptions")
    p.set_defaults(run=lambda args: _print(attack_lines()))
    p = sub.add_parser("defenses", help="list the client defenses with what they do and their settings")
    p.set_defaults(run=lambda args: _print(defense_lines()))


def _print(lines: list[str]) -> int:
    print("\n".join(lines))
    return 0
