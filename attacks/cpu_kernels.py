"""Which CPU convolution kernels the matching loop runs on: oneDNN (torch's default) or torch's native ones.

The loop evaluates a second-order gradient thousands of times, so per-call overhead matters. On DLG's LeNet at
32×32×3 (one thread) an evaluation took 2.4 ms with oneDNN and 1.7 ms with the native kernels, while ResNet-18 took
267 ms with oneDNN and 498 ms native, and 64×64 LeNet or CNN6 were about even. ``auto`` therefore times one
evaluation both ways before the loop and keeps the faster (like cuDNN's benchmark mode on GPUs). It is an opt-in:
the matching loop defaults to ``native``, because a choice made by timing depends on the machine's load, and with
round-off this chaotic one image's outcome flipped from 40 dB to 6.8 dB between the two kernels (CIFAR-10
image 11, ``dlg`` on DLG's LeNet). Whichever is used is written into the attack's diagnostics.

The switch is torch's process-wide ``torch.backends.mkldnn`` flag, restored afterwards. Both kernels compute the
same convolutions; their round-off differs, so bit-for-bit reproducibility needs a fixed choice.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import torch

CHOICES = ("auto", "onednn", "native")


def time_call(probe: Callable[[], object], repeats: int = 3) -> float:
    """Best-of-``repeats`` seconds of ``probe`` after one warm-up call (the fastest run is the least disturbed)."""
    probe()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        probe()
        best = min(best, time.perf_counter() - start)
    return best


def pick_kernels(choice: str, probe: Callable[[], object] | None) -> str:
    """Resolve ``auto`` by timing ``probe`` under both kernels; a fixed choice is returned as it is (no probe
    needed), except ``onednn`` where torch has no oneDNN (then ``native``)."""
    if choice not in CHOICES:
        raise ValueError(f"conv_kernels must be one of {', '.join(CHOICES)}; got {choice!r}")
    if choice != "auto" or not torch.backends.mkldnn.is_available():
        return choice if torch.backends.mkldnn.is_available() else "native"
    if probe is None:
        raise ValueError("conv_kernels 'auto' needs a probe to time")
    timings = {}
    for kernels in ("onednn", "native"):
        with conv_kernels(kernels):
            timings[kernels] = time_call(probe)
    return min(timings, key=timings.get)


@contextlib.contextmanager
def conv_kernels(kernels: str) -> Iterator[None]:
    """Run the block with oneDNN convolutions on (``onednn``) or off (``native``); only that flag is touched."""
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = kernels == "onednn"
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous


@contextlib.contextmanager
def torch_threads(limit: int | None, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run with ``limit`` torch intra-op threads on a CPU device (None or 0: leave the setting alone), and restore
    the process's setting afterwards, also after an error: attack actors share the cores with training clients."""
    previous = torch.get_num_threads()
    if limit and torch.device(device).type == "cpu":
        torch.set_num_threads(limit)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
