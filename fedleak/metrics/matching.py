"""Order-free comparison of a reconstructed batch with the true batch.

A gradient is a sum over the batch, so an attack can at best recover the images and labels as a set: before
scoring, reconstructions are paired one-to-one with true images (Hungarian assignment on MSE), and labels are
compared as multisets.
"""

from collections import Counter
from collections.abc import Sequence

import torch
from scipy.optimize import linear_sum_assignment


def pairwise_mse(recon: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """MSE between every reconstruction (rows) and every true image (columns), float64, shape R×T."""
    if recon.shape[1:] != true.shape[1:]:
        raise ValueError(
            f"reconstructed images are {tuple(recon.shape[1:])} but true images are {tuple(true.shape[1:])}"
        )
    r = recon.detach().to("cpu", torch.float64).flatten(1)
    t = true.detach().to("cpu", torch.float64).flatten(1)
    # Direct differences, not the |r|²+|t|²−2r·t expansion: that cancels catastrophically for near-exact matches.
    # One row at a time keeps memory at T×D rather than R×T×D for large batches.
    return torch.stack([((row - t) ** 2).mean(dim=1) for row in r]) if len(r) else r.new_zeros(0, len(t))


def match_images(recon: torch.Tensor, true: torch.Tensor) -> list[tuple[int, int]]:
    """One-to-one pairs ``(recon_index, true_index)`` minimising the total MSE, sorted by ``true_index``.

    With R reconstructions and T true images, ``min(R, T)`` pairs come back: the extra reconstructions, or the
    true images nobody reconstructed, stay unmatched.

    Example:
        >>> true = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])
        >>> match_images(true.flip(0), true)
        [(1, 0), (0, 1)]
    """
    if recon.shape[0] == 0 or true.shape[0] == 0:
        return []
    cost = pairwise_mse(recon, true)
    if not torch.isfinite(cost).all():
        raise ValueError("cannot match images: the reconstruction contains NaN or inf pixels")
    rows, cols = linear_sum_assignment(cost.numpy())
    return sorted(((int(r), int(c)) for r, c in zip(rows, cols, strict=True)), key=lambda pair: pair[1])


def _as_list(labels: torch.Tensor | Sequence[int]) -> list[int]:
    """Class indices as ints. A B×K float tensor (DLG's soft dummy labels) counts as its per-row argmax."""
    if isinstance(labels, torch.Tensor):
        if labels.dim() == 2 and labels.dtype.is_floating_point:
            labels = labels.argmax(dim=1)
        if labels.dim() != 1:
            raise ValueError(f"labels must be class indices (1-D) or B×K class scores, got shape {tuple(labels.shape)}")
        return [int(v) for v in labels.tolist()]
    return [int(v) for v in labels]


def label_accuracy(pred: torch.Tensor | Sequence[int], true: torch.Tensor | Sequence[int]) -> float:
    """Share of the true labels recovered, comparing multisets: ``|pred ∩ true| / len(true)``.

    Batch order is unknown to the attacker, so ``[3, 1]`` against ``[1, 3]`` is 1.0, and ``[1, 1]`` against
    ``[1, 3]`` is 0.5 (a repeated label counts only as often as it truly occurs). Soft labels (a B×K float
    tensor) count as their argmax.

    Example:
        >>> label_accuracy([1, 1, 7], [7, 1, 2])
        0.6666666666666666
    """
    true_list = _as_list(true)
    if not true_list:
        raise ValueError("label_accuracy needs at least one true label")
    common = Counter(_as_list(pred)) & Counter(true_list)
    return sum(common.values()) / len(true_list)


def matched_label_accuracy(
    pairs: Sequence[tuple[int, int]], pred: torch.Tensor | Sequence[int], true: torch.Tensor | Sequence[int]
) -> float:
    """Share of the true images whose matched reconstruction carries the true image's label.

    ``pairs`` are ``(recon_index, true_index)`` from :func:`match_images`; ``pred[r]`` is the label the attack gave
    reconstruction ``r``. True images nobody reconstructed count as misses, as in the success rate.

    Example:
        >>> matched_label_accuracy([(1, 0), (0, 1)], [7, 3], [3, 7])
        1.0
        >>> matched_label_accuracy([(0, 0), (1, 1)], [7, 3], [3, 7])
        0.0
    """
    true_list, pred_list = _as_list(true), _as_list(pred)
    if not true_list:
        raise ValueError("matched_label_accuracy needs at least one true label")
    hits = sum(1 for r, t in pairs if pred_list[r] == true_list[t])
    return hits / len(true_list)
