"""iDLG's recipe, shared by ``idlg`` and ``inverting_gradients``: labels first, from the last layer's gradient, then
gradient matching on the images alone under those labels (Zhao, Mopuri, Bilen 2020, arXiv 2001.02610)."""

from __future__ import annotations

from dataclasses import replace

import torch

from fedleak.attacks.labels import infer_labels
from fedleak.attacks.matching import match_gradients
from fedleak.attacks.matching_problem import matching_problem, random_init, to_reconstruction
from fedleak.types import Observation, Reconstruction


def match_with_inferred_labels(observation: Observation, cfg, device: torch.device, seed: int) -> Reconstruction:
    """Infer the labels from the last layer's gradient, then match data only under them.

    ``cfg`` provides ``local_steps_mode``, ``batch_size``, ``label_method``, ``init``, ``match_config()`` and
    ``image_prior(image_shape)`` (the TV weight the run uses, stated in the diagnostics).
    """
    problem = matching_problem(observation, device, cfg.local_steps_mode, cfg.batch_size)
    inferred = infer_labels(
        problem.target, problem.num_classes, problem.batch_size, method=cfg.label_method,
        known=observation.labels, model=problem.model, image_shape=problem.image_shape,
    )
    shape = (problem.batch_size, *problem.image_shape)
    generator = torch.Generator().manual_seed(seed)
    prior = cfg.image_prior(problem.image_shape)
    result = match_gradients(
        problem.update_fn, problem.target, random_init(shape, cfg.init), inferred.labels,
        replace(cfg.match_config(), tv_weight=prior.tv_weight), generator=generator,
    )
    return to_reconstruction(result, problem, inferred.labels, tv_weight=prior.tv_weight, image_prior=prior.describe(),
                             **inferred.diagnostics())
