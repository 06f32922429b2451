"""How good is the two-stage re-identification search (MSE pre-filter, then SSIM), and what does it cost?

For distorted copies of MNIST images (noise, blur, two-image mixtures like R-CONV's batch mixtures, blanks), the
nearest dataset image by SSIM is found two ways: exhaustively (SSIM against all 5000 bundled training images,
vectorised with scipy in exactly scikit-image's setting, checked against scikit-image first) and as
``fedleak.metrics.reference`` does it (k nearest by MSE, then scikit-image's SSIM on those). The table gives, per
distortion and k, the share of queries where the two agree on "re-identified" and the seconds per query.

    python bench/reidentification.py --queries 30 --k 8 32 128
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from fedleak.config.schema import DataConfig
from fedleak.data import load_images
from fedleak.metrics import SSIM_SETTINGS, ssim
from fedleak.metrics.reference import ReferenceSet, reidentified

C1, C2 = (0.01 * 1.0) ** 2, (0.03 * 1.0) ** 2
PAD = 5  # scikit-image crops (win_size - 1) // 2 = 5 px of each border before averaging


def _filter(stack: np.ndarray) -> np.ndarray:
    """Gaussian filter of every image of an N×H×W stack, as scikit-image's SSIM filters one image."""
    return gaussian_filter(stack, sigma=(0, SSIM_SETTINGS["sigma"], SSIM_SETTINGS["sigma"]), truncate=3.5,
                           mode="reflect")


class Exhaustive:
    """SSIM of one grey query image against every dataset image at once."""

    def __init__(self, images: np.ndarray):
        self.y = images
        self.uy, self.uyy = _filter(images), _filter(images * images)

    def scores(self, x: np.ndarray) -> np.ndarray:
        ux, uxx = _filter(x[None])[0], _filter((x * x)[None])[0]
        uxy = _filter(self.y * x[None])
        vx, vy, vxy = uxx - ux * ux, self.uyy - self.uy * self.uy, uxy - ux[None] * self.uy
        s = ((2 * ux * self.uy + C1) * (2 * vxy + C2)) / ((ux * ux + self.uy * self.uy + C1) * (vx + vy + C2))
        return s[:, PAD:-PAD, PAD:-PAD].mean(axis=(1, 2))


def distortions(images: np.ndarray, rng: np.random.Generator) -> dict[str, callable]:
    def other(i: int) -> np.ndarray:
        return images[(i + 1 + rng.integers(len(images) - 1)) % len(images)]

    kinds = {f"noise σ={s}": (lambda i, s=s: np.clip(images[i] + s * rng.standard_normal(images[i].shape), 0, 1))
             for s in (0.1, 0.3, 0.5)}
    kinds["blur σ=1.5"] = lambda i: gaussian_filter(images[i], 1.5)
    kinds |= {f"mixture {w:g}/{1 - w:g}": (lambda i, w=w: w * images[i] + (1 - w) * other(i)) for w in (0.7, 0.5)}
    kinds["blank"] = lambda i: np.zeros_like(images[i])
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=30, help="queries per distortion")
    parser.add_argument("--k", type=int, nargs="+", default=[8, 32, 128], help="MSE candidates kept")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    image_set = load_images(DataConfig(dataset="mnist"))
    reference = ReferenceSet.of(image_set)
    images = image_set.images[:, 0].double().numpy() / 255.0
    exhaustive = Exhaustive(images)
    check = np.random.default_rng(1).integers(len(images), size=5)
    ours = exhaustive.scores(images[check[0]])[check]
    theirs = ssim(torch.from_numpy(images[check[0]]).expand(5, 1, 28, 28), torch.from_numpy(images[check][:, None]))
    assert np.allclose(ours, theirs.numpy(), atol=1e-9), (ours, theirs)
    rng = np.random.default_rng(args.seed)
    targets = rng.choice(len(images), size=args.queries, replace=False)
    print(f"{len(images)} MNIST images, {args.queries} queries per distortion")
    print("| distortion | exhaustive: re-identified | " + " | ".join(f"k={k}: agree, s/query" for k in args.k) + " |")
    for name, distort in distortions(images, rng).items():
        queries = [distort(int(i)) for i in targets]
        truth = [int(np.argmax(exhaustive.scores(q))) == int(i) for q, i in zip(queries, targets, strict=True)]
        cells = [f"{np.mean(truth):.2f}"]
        for k in args.k:
            start = time.perf_counter()
            found = [reidentified(reference, torch.from_numpy(q)[None, None], torch.from_numpy(images[i])[None, None],
                                  k=k)[0]
                     for q, i in zip(queries, targets, strict=True)]
            seconds = (time.perf_counter() - start) / len(queries)
            cells.append(f"{np.mean(np.array(found) == np.array(truth)):.2f}, {seconds:.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
