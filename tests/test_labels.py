"""Label inference: iDLG row sums and bias sign at B = 1 on real images, batch label counts, granted labels."""

from __future__ import annotations

import pytest
import torch

from fedleak.attacks.labels import (
    bias_sign_label,
    counts_to_labels,
    idlg_label,
    infer_labels,
    label_counts,
    last_linear_gradients,
)
from fedleak.config.schema import DataConfig
from fedleak.data import load_images
from fedleak.training import batch_gradient
from fedleak.types import ModelSpec


def _lenet_gradient(images: torch.Tensor, labels: torch.Tensor, num_classes: int, seed: int = 0):
    spec = ModelSpec("lenet", images.shape[1], images.shape[-1], num_classes)
    torch.manual_seed(seed)
    model = spec.build()
    return model, batch_gradient(model, images, labels)


@pytest.mark.parametrize("dataset", ["mnist", "cifar10", "cifar100", "lfw"])
def test_idlg_and_bias_sign_labels_are_exact_at_batch_one_on_sigmoid_lenet(dataset: str) -> None:
    image_set = load_images(DataConfig(dataset=dataset, split="test"))
    size = 28 if dataset == "mnist" else 32
    for index in range(6):
        image, label = image_set.get([index])
        _, grads = _lenet_gradient(image, label, image_set.num_classes, seed=index)
        weight_grad, bias_grad = last_linear_gradients(grads, image_set.num_classes)
        assert weight_grad.shape[0] == image_set.num_classes and image.shape[-1] == size
        assert idlg_label(weight_grad) == int(label)
        assert bias_sign_label(bias_grad) == int(label)
        inferred = infer_labels(grads, image_set.num_classes, batch_size=1)
        assert inferred.labels.tolist() == label.tolist() and inferred.method == "bias_sign"


def test_bias_sign_rule_picks_the_only_negative_entry() -> None:
    bias_grad = torch.tensor([0.1, 0.05, -0.7, 0.2, 0.35])
    weight_grad = bias_grad[:, None] * torch.rand(1, 8)  # FC input non-negative: rows share the bias's sign
    grads = {"fc.weight": weight_grad, "fc.bias": bias_grad}
    assert bias_sign_label(bias_grad) == 2
    assert infer_labels(grads, 5, 1, method="idlg").labels.tolist() == [2]
    assert infer_labels(grads, 5, 1, method="bias_sign").labels.tolist() == [2]


def test_label_counts_recover_a_crafted_batch_exactly() -> None:
    # dL/db = p̄ − n/B with a known, non-uniform p̄ and repeated labels.
    batch = 5
    counts = torch.tensor([0, 2, 0, 1, 0, 2])
    p_mean = torch.tensor([0.30, 0.05, 0.20, 0.15, 0.10, 0.20], dtype=torch.float64)
    bias_grad = p_mean - counts.double() / batch
    assert label_counts(bias_grad, batch, p_mean).tolist() == counts.tolist()
    assert counts_to_labels(counts).tolist() == [1, 1, 3, 5, 5]


def test_label_counts_on_an_untrained_lenet_batch_with_repeated_labels() -> None:
    image_set = load_images(DataConfig(dataset="cifar10", split="test"))
    images, labels = image_set.get([0, 1, 2, 3, 4, 5])  # labels 3 8 8 0 6 6
    model, grads = _lenet_gradient(images, labels, 10)
    inferred = infer_labels(grads, 10, batch_size=6, model=model, image_shape=(3, 32, 32))
    assert inferred.method == "counts"
    assert inferred.labels.tolist() == sorted(labels.tolist())


def test_granted_labels_are_used_as_given_and_reported() -> None:
    grads = {"fc.weight": torch.zeros(3, 4), "fc.bias": torch.zeros(3)}
    inferred = infer_labels(grads, 3, 2, known=torch.tensor([2, 0]))
    assert inferred.labels.tolist() == [2, 0]
    assert inferred.diagnostics()["labels_known"] is True and inferred.method == "granted"


def test_single_image_rules_refuse_batches_and_a_missing_layer_is_named() -> None:
    grads = {"fc.weight": torch.randn(4, 3), "fc.bias": torch.randn(4)}
    with pytest.raises(ValueError, match="one image"):
        infer_labels(grads, 4, 3, method="idlg")
    with pytest.raises(ValueError, match="no fully connected layer with 7 outputs"):
        infer_labels(grads, 7, 1)
