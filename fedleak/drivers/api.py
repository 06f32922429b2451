"""fedleak from Python: load and override a scenario, simulate it, attack one update, open a finished run.

The functions are re-exported by the package (``import fedleak; fedleak.simulate(...)``); tables come back as pandas
DataFrames read from the run directory's machine-readable files (leakage.csv, rounds.csv, images.csv, clients.csv),
so a run opened a month later reads exactly as the one just finished. Example::

    import fedleak

    scenario = fedleak.load_scenario("scenarios/smoke.yaml", overrides=["training.rounds=1"])
    run = fedleak.simulate(scenario, out="runs/notebook")
    run.images.groupby("attack")["psnr"].median()

    result = fedleak.attack("idlg", my_module, images, labels, iterations=50)
    result.per_image
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fedleak.config.schema import Scenario
from fedleak.errors import UserError


def load_scenario(source: str | Path | Mapping[str, Any], overrides: Sequence[str] = ()) -> Scenario:
    """A scenario from a YAML file or a mapping, fully checked, with ``--set``-style ``overrides`` applied
    (``["training.rounds=5", "attacks[0].params.iterations=50"]``); a bad value raises :class:`UserError`."""
    # lazy (start-up): `import fedleak` stays cheap; torch, Flower, pandas load on first use
    from fedleak.drivers.cli.scenario_args import load_with_overrides
    from fedleak.drivers.scenarios import parse_scenario

    if isinstance(source, Mapping):
        # lazy (start-up): `import fedleak` stays cheap; torch, Flower, pandas load on first use
        from fedleak.config.overrides import apply_overrides

        return parse_scenario(apply_overrides(dict(source), overrides), source="<mapping>")
    return load_with_overrides(source, overrides)


def _frame(path: Path) -> Any:
    # lazy (start-up): `import fedleak` stays cheap; torch, Flower, pandas load on first use
    import pandas as pd

    return pd.read_csv(path) if path.is_file() and path.stat().st_size else pd.DataFrame()


@dataclass
class Run:
    """A run directory as tables. ``ok`` and ``problems`` are known for a run just simulated (None when opened)."""

    path: Path
    ok: bool | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def scenario(self) -> dict[str, Any]:
        """The resolved scenario the run used (scenario.yaml)."""
        # lazy (start-up): `import fedleak` stays cheap; torch, Flower, pandas load on first use
        import yaml

        return yaml.safe_load((self.path / "scenario.yaml").read_text(encoding="utf-8"))

    @property
    def provenance(self) -> dict[str, Any] | None:
        """run.json: versions, commit, lock, device, command, seed, times (None for runs that predate it)."""
        # lazy (start-up): `import fedleak` stays cheap; torch, Flower, pandas load on first use
        from fedleak.provenance import read

        return read(self.path)

    @property
    def arms(self) -> dict[str, Run]:
        """The arms of a run with ``arms:``, by name (empty for a single federation)."""
        folder = self.path / "arms"
        names = self.scenario.get("arms") or []
        return {arm["name"]: Run(folder / arm["name"]) for arm in names if (folder / arm["name"]).is_dir()}

    @property
    def leakage(self) -> Any:
        """leakage.csv: one row per attack on an update (every arm's, with an ``arm`` column, for a run with arms)."""
        return self._table("leakage.csv")

    @property
    def rounds(self) -> Any:
        """rounds.csv: accuracy, loss and who took part, per round."""
        return self._table("rounds.csv")

    @property
    def clients(self) -> Any:
        """clients.csv: the worst case per client, snake_case columns."""
        return self._table("clients.csv")

    @property
    def images(self) -> Any:
        """The long per-image table (images.csv; built from leakage.csv when the report was not written)."""
        # lazy (start-up): `import fedleak` stays cheap; torch, Flower, pandas load on first use
        import pandas as pd

        if self.arms and not (self.path / "images.csv").is_file():
            return pd.concat([arm.images for arm in self.arms.values()], ignore_index=True)
        if not (self.path / "images.csv").is_file():
            # lazy (start-up): `import fedleak` stays cheap; torch, Flower, pandas load on first use
            from fedleak.report.tables import read_leakage
            from fedleak.report.tidy import image_rows, run_and_arm

            run, arm = run_and_arm(self.path)
            return pd.DataFrame(image_rows(read_leakage(self.path / "leakage.csv").rows, run, arm))
        return _frame(self.path / "images.csv")

    @property
    def frontier(self) -> Any:
        """frontier.csv of a run with arms: accuracy against worst-case leakage per arm."""
        return _frame(self.path / "frontier.csv")

    @property
    def report(self) -> Path:
        return self.path / "report.html"

    def _table(self, name: str) -> Any:
        # lazy (start-up): `import fedleak` stays cheap; torch, Flower, pandas load on first use
        import pandas as pd

        if self.arms and not (self.path / name).is_file():
            frames = [arm._table(name).assign(arm=arm_name) for arm_name, arm in self.arms.items()]
            return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        return _frame(self.path / name)


def open_run(path: str | Path) -> Run:
    """A finished (or interrupted) run directory, as tables."""
    path = Path(path)
    if not (path / "scenario.yaml").is_file():
        raise UserError(f"{path}: not a run directory (no scenario.yaml); pass a folder fedleak simulate wrote")
    return Run(path)


def simulate(scenario: Scenario | str | Path, *, out: str | Path | None = None, overrides: Sequence[str] = (),
             executor: str | None = "local", progress: bool = False, report: bool = True,
             verbose: bool = False) -> Run:
    """Run a scenario (an object or a file, with ``overrides``) on Flower's simulation engine, as
    ``fedleak simulate`` does, and return the run. ``executor``: ``local`` (in this process, the default here),
    ``ray``, or None for the scenario's own."""
    # lazy (start-up): `import fedleak` stays cheap; torch, Flower, pandas load on first use
    from fedleak.defaults import run_dir_for
    from fedleak.drivers.simulation import simulate as run_simulation

    base_dir = None
    if not isinstance(scenario, Scenario):
        base_dir = Path(scenario).resolve().parent
        scenario = load_scenario(scenario, overrides)
    elif overrides:
        scenario = load_scenario(scenario.model_dump(mode="json"), overrides)
    if scenario.arms:
        raise UserError("a scenario with arms: run it with the fedleak simulate command (one federation per arm)")
    run_dir = run_dir_for(Path(out) if out else None, scenario.output.dir, scenario.name)
    result = run_simulation(scenario, run_dir=run_dir, base_dir=base_dir, executor=executor, report=report,
                            verbose=verbose, progress=progress)
    return Run(run_dir, ok=result.ok, problems=list(result.problems))


@dataclass
class AttackResult:
    """One attack on one update: the reconstruction, scores per true image and for the batch, the diagnostics."""

    status: str
    reason: str
    images: torch.Tensor | None
    per_image: Any
    summary: dict[str, Any]
    diagnostics: dict[str, Any]
    observation: Any


def _module_spec(model: str | nn.Module, images: torch.Tensor, num_classes: int | None) -> tuple[Any, nn.Module]:
    """The ModelSpec an attack rebuilds the model from, and the model with the client's starting weights.

    A user's own module is registered under a name of its own, whose builder returns a copy of it: attacks rebuild
    the architecture from the spec as they do for registry models, and read the weights from the observation."""
    # lazy (start-up): `import fedleak` stays cheap; torch, Flower, pandas load on first use
    from fedleak.models import MODELS
    from fedleak.types import ModelSpec

    channels, size = int(images.shape[1]), int(images.shape[-1])
    if isinstance(model, str):
        if num_classes is None:
            raise UserError("num_classes: give the number of classes the registry model should be built for")
        spec = ModelSpec(model, channels, size, num_classes)
        return spec, spec.build()
    with torch.no_grad():
        outputs = int(model(images[:1]).shape[-1])
    name = f"user-{type(model).__name__}-{id(model):x}"
    template = copy.deepcopy(model)
    MODELS.remove(name)
    MODELS.add(name, lambda **_: copy.deepcopy(template))
    return ModelSpec(name, channels, size, num_classes or outputs), copy.deepcopy(model)


def attack(name: str, model: str | nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
           num_classes: int | None = None, update: str = "gradient", lr: float = 0.1, steps: int = 1,
           epochs: int = 1, batch_size: int | None = None, defense: Mapping[str, Any] | None = None,
           labels_known: bool = False, hparams_known: bool = True, batch_size_known: bool = True, seed: int = 0,
           device: str = "cpu", success_psnr: float = 30.0, **params: Any) -> AttackResult:
    """Attack the update a client sends after training ``model`` (a registry name or your own ``nn.Module``, whose
    current weights are the global model) on ``images`` (B×C×H×W in [0, 1]) and ``labels``, as ``fedleak attack``
    does: the same client update, the same threat-model filter, the same scorer. ``params`` are the attack's
    settings (``fedleak attacks`` lists the attacks; unknown settings raise UserError)."""
    # lazy (start-up): `import fedleak` stays cheap; torch, Flower, pandas load on first use
    import pandas as pd
    from pydantic import TypeAdapter

    from fedleak.attacks import get_attack
    from fedleak.clients.update import LocalTraining
    from fedleak.clients.victim import victim_observation
    from fedleak.config.schema import Defense, NoDefense
    from fedleak.scoring import batch_score
    from fedleak.types import ThreatModel

    spec, victim = _module_spec(model, images, num_classes)
    plan = LocalTraining(update, batch_size or len(images), steps, epochs, lr)
    threat = ThreatModel(labels_known=labels_known, local_hparams_known=hparams_known,
                         batch_size_known=batch_size_known)
    chosen = TypeAdapter(Defense).validate_python(dict(defense)) if defense else NoDefense()
    observation, _ = victim_observation(spec, victim, images, labels, plan, defense=chosen, seed=seed,
                                        threat=threat)
    try:
        recon = get_attack(name, device=device, seed=seed, **params)(observation)
    finally:
        if not isinstance(model, str):
            # lazy (start-up): `import fedleak` stays cheap; torch, Flower, pandas load on first use
            from fedleak.models import MODELS

            MODELS.remove(spec.name)  # the user's module was registered for this attack only
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"status": recon.status, "seconds": recon.seconds}
    if recon.status == "ok":
        score = batch_score(recon, images, labels, success_psnr)
        rows = [{"image": s.true_index, "recovered": s.psnr is not None, "psnr": s.psnr, "ssim": s.ssim,
                 "mse": s.mse} for s in score.per_image]
        summary.update(psnr=score.psnr, ssim=score.ssim, mse=score.mse, label_accuracy=score.label_accuracy,
                       success=score.success, reconstructions=score.reconstructions)
    return AttackResult(status=recon.status, reason=recon.reason or "", images=recon.images,
                        per_image=pd.DataFrame(rows, columns=["image", "recovered", "psnr", "ssim", "mse"]),
                        summary=summary, diagnostics=json.loads(json.dumps(recon.diagnostics, default=str)),
                        observation=observation)
