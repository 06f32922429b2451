"""Victims for attack tests: real bundled images and the Observation a server sees of one client's gradient."""

from __future__ import annotations

import torch

from fedleak.data.bundled import load_bundled
from fedleak.observe import observe
from fedleak.training import batch_gradient
from fedleak.types import ModelSpec, Observation, ThreatModel


def real_images(dataset: str, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Real test images bundled in the foolbox wheel, as floats in [0, 1]."""
    images = load_bundled(dataset, "test", None)
    return images.images[indices].float() / 255.0, images.labels[indices]


def gradient_observation(
    model_name: str, images: torch.Tensor, labels: torch.Tensor, activation: str | None = None, seed: int = 0
) -> Observation:
    """What the server sees of one client's float32 gradient on ``images`` (a freshly seeded model)."""
    torch.manual_seed(seed)
    spec = ModelSpec(model_name, images.shape[1], images.shape[-1], 10, activation)
    model = spec.build()
    update = batch_gradient(model, images, labels)  # float32, as a client sends it
    return observe(spec, model.state_dict(), update, "gradient", ThreatModel(), {"batch_size": len(images)})


class Recorder:
    """Forwards to an Observation and records every attribute the attack reads."""

    def __init__(self, observation: Observation):
        self._observation = observation
        self.read: set[str] = set()

    def __getattr__(self, name: str):
        self.read.add(name)
        return getattr(self._observation, name)


def run_recording_reads(attack: str, observation: Observation):
    """Run ``attack`` on an Observation without granted labels and check that it read only what a server sees:
    the Observation's fields and its public methods, never the labels. Returns the reconstruction."""
    import dataclasses

    from fedleak.attacks import get_attack

    assert observation.labels is None  # not granted
    recorder = Recorder(observation)
    result = get_attack(attack)(recorder)
    assert result.status == "ok", result.reason
    public = {f.name for f in dataclasses.fields(Observation)} | {"gradient", "build_model", "batch_size"}
    assert recorder.read <= public, recorder.read - public
    assert "labels" not in recorder.read
    return result
