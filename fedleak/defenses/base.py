"""A defense is one object: its settings and hooks for everything it does, registered once under its ``kind``.

A scenario's ``defense:`` mapping is validated into the class registered under its ``kind`` (the schema's union is
this registry, read when a scenario is validated, so a defense registered later is accepted too). Everything else
asks the object, never its name:

- :meth:`Defense.batches` — how the client draws its batches (DP-SGD: Poisson sampling), or None for the usual draw;
- :meth:`Defense.train` — the round's training under the defense (DP-SGD's noisy steps), or None for plain SGD;
- :meth:`Defense.transform` — what it does to the finished update before it leaves (prune, quantize, local DP);
- :meth:`Defense.spent` — its privacy accounting after the rounds a client took part in (ε, δ, unit);
- :meth:`Defense.check_model` — why it cannot protect a model (Opacus' validator for DP-SGD), checked when the
  scenario loads.

A new defense is one file: a subclass with ``kind: Literal["name"] = "name"``, its settings as fields, the hooks it
needs, and ``@register_defense``. A defense registered outside ``fedleak.defenses`` reaches the ClientApp's workers
because the app imports the module of every defense its scenario uses (see :func:`defense_modules`).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

import numpy as np
import torch
from pydantic import BaseModel, BeforeValidator, ConfigDict, SerializeAsAny
from pydantic_core import PydanticCustomError

from fedleak.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from fedleak.privacy import PrivacySpent
    from fedleak.training import LocalTraining

Update = dict[str, torch.Tensor]
Batch = tuple[torch.Tensor, torch.Tensor]


class Defense(BaseModel):
    """The base of every defense: no hook does anything, so a subclass overrides only what it changes."""

    model_config = ConfigDict(extra="forbid")

    kind: str

    def label(self) -> str:
        """A short, stable name for result tables: the kind and its settings."""
        settings = self.model_dump(exclude={"kind"}, exclude_none=True)
        if not settings:
            return self.kind
        return self.kind + "(" + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in settings.items()) + ")"

    def batches(self, shard: np.ndarray, plan: LocalTraining, seed: int, client: int,
                server_round: int) -> list[np.ndarray] | None:
        """The index batches of the round when the defense draws them itself, else None (the usual draw).

        A defense that draws its batches keeps their size private: the client reports the nominal batch size."""
        return None

    def draws_batches(self) -> bool:
        """Whether :meth:`batches` draws the batches (then their size is private, and the client reports the nominal
        batch size)."""
        return type(self).batches is not Defense.batches

    def train(self, model: nn.Module, batches: list[Batch], plan: LocalTraining, generator: torch.Generator,
              shard_size: int) -> Update | None:
        """The round's update when the defense changes the training steps, else None (plain SGD).

        Same contract as the plain update: a gradient keyed by parameter for ``gradient``, else the full state dict
        after training; ``model`` is left unchanged."""
        return None

    def transform(self, update: Update, generator: torch.Generator) -> Update:
        """The floating tensors of the finished update (a gradient, or the change of the weights) as sent."""
        return update

    def transforms_reply(self) -> bool:
        """Whether :meth:`transform` does anything (the ClientApp's mod passes other replies through)."""
        return type(self).transform is not Defense.transform

    def spent(self, plan: LocalTraining, shard_size: int, rounds: int) -> PrivacySpent | None:
        """ε (with δ and unit) after ``rounds`` rounds of taking part; None for a defense without a DP guarantee."""
        return None

    def rero(self, plan: LocalTraining, shard_size: int, rounds: int, kappa: float) -> float | None:
        """The reconstruction-robustness bound for one training record after ``rounds`` rounds of taking part, at
        prior mass ``kappa`` (:mod:`fedleak.rero`); None for a defense without a DP guarantee."""
        return None

    def check_model(self, model: nn.Module, model_name: str) -> str | None:
        """Why this defense cannot protect ``model`` (one sentence saying what to do), or None when it can."""
        return None


#: Every defense class, by its ``kind``; the scenario's ``defense:`` union.
DEFENSES: Registry[type[Defense]] = Registry("defense")


def kind_of(defense: type[Defense]) -> str:
    """The ``kind`` a defense class declares (its ``kind: Literal[...]`` field)."""
    kinds = get_args(defense.model_fields["kind"].annotation)
    if len(kinds) != 1:
        raise TypeError(f"{defense.__name__}.kind must be Literal['<name>'], naming the defense once")
    return kinds[0]


def register_defense(defense: type[Defense]) -> type[Defense]:
    """Class decorator: register a defense under its own ``kind`` (a second one of that name is an error)."""
    DEFENSES.add(kind_of(defense), defense)
    return defense


def defense_from(value: Any) -> Defense:
    """A scenario's ``defense:`` value as the registered defense of its ``kind`` (pydantic errors keep the field)."""
    if isinstance(value, Defense):
        return value
    if not isinstance(value, dict):
        raise PydanticCustomError("defense_type", "a defense is a mapping with a kind, e.g. {kind: prune, ratio: 0.9}")
    kind = value.get("kind")
    if kind not in DEFENSES:
        raise PydanticCustomError("defense_kind", "unknown defense kind '{kind}'; choose one of: {choices}",
                                  {"kind": kind, "choices": ", ".join(DEFENSES.names())})
    return DEFENSES.get(kind).model_validate(value)


#: The type of a scenario's ``defense:`` field: any registered defense, chosen by ``kind``, dumped with all its
#: settings.
AnyDefense = Annotated[SerializeAsAny[Defense], BeforeValidator(defense_from)]


def defense_modules(defenses: Iterable[Defense]) -> list[str]:
    """The modules that define ``defenses``: importing them registers each (a worker process needs that)."""
    return sorted({type(d).__module__ for d in defenses})


def import_defense_modules(modules: Iterable[str]) -> None:
    """Import the modules of a scenario's defenses, so its JSON validates in this process too."""
    for module in modules:
        importlib.import_module(module)


@register_defense
class NoDefense(Defense):
    """The update leaves the client as computed."""

    kind: Literal["none"] = "none"


#: Keeps the defense's random stream apart from the batch draw, which seeds with (seed, client, round).
_DEFENSE_STREAM = 1


def noise_generator(seed: int, client: int, server_round: int) -> torch.Generator:
    """The generator of a client's defense noise in one round, from the scenario seed (never shared by clients)."""
    state = np.random.SeedSequence([seed % 2**64, client, server_round, _DEFENSE_STREAM]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def apply_defense(update: Update, defense: Defense, generator: torch.Generator, sent: Update | None = None) -> Update:
    """The update the client sends under ``defense``: its :meth:`~Defense.transform` on the floating tensors.

    Args:
        update: the computed update: a gradient, or (with ``sent``) the weights after local training.
        defense: the client's defense; one without a transform returns ``update`` itself.
        generator: source of the defense's noise.
        sent: the global weights the client received, when ``update`` holds weights: the defense then acts on the
            change and adds it back (as Flower's ``LocalDpMod`` does). Integer buffers (e.g. BatchNorm's step
            counter) pass through.
    """
    if not defense.transforms_reply():
        return update
    floating = {k: v for k, v in update.items() if v.is_floating_point()}
    if sent is not None:
        floating = {k: v - sent[k] for k, v in floating.items()}
    defended = defense.transform(floating, generator)
    if sent is not None:
        defended = {k: sent[k] + v for k, v in defended.items()}
    return {k: defended.get(k, v) for k, v in update.items()}


def defense_label(defense: Defense) -> str:
    """A short, stable name for result tables: the kind and its settings."""
    return defense.label()
