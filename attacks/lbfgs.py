"""Fixed-step L-BFGS for the matching loop, one gradient evaluation per step.

It follows the update rules of ``torch.optim.LBFGS`` with ``max_iter=1`` and no line search (DLG's optimiser), so
the matching loop can check its stop rules after every evaluation. Two things differ, both for speed on small
models, where the optimiser's own work used to rival the gradient evaluation:

* the direction comes from the compact representation of the inverse Hessian (Byrd, Nocedal, Schnabel 1994,
  "Representations of quasi-Newton matrices and their use in limited memory methods") instead of the two-loop
  recursion: a few matrix products instead of ~4 small tensor operations per stored pair;
* the stored steps ``s_i`` and gradient changes ``y_i`` share one buffer, so every product with all of them is one
  pass over memory: per evaluation one pass computes ``S g``, ``Y g`` and the new pair's inner products, and one
  more builds the direction (the earlier layout read the history seven times).

Same directions as torch's up to round-off; the small k×k matrices are kept in float64.

One rule differs from torch: when the stored curvature pairs give a direction that is not a descent direction,
torch ends the step, and the next step computes the same direction from the same point, so the run is stuck for
good. Here the pairs are dropped and the step restarts from steepest descent (``resets`` counts these). Measured on
colour LFW faces at 64 px on DLG's LeNet, where fixed-step L-BFGS used to stop "without progress" far from a match.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class CompactLBFGS:
    """Minimal optimiser interface: ``step(closure)``, where the closure sets ``.grad`` of every parameter."""

    def __init__(self, params: list[torch.Tensor], lr: float, history: int, max_step: float | None = None) -> None:
        self.params, self.lr, self.history, self.max_step = params, lr, history, max_step
        self.capped = 0
        self.n_iter, self.h_diag, self.t = 0, 1.0, lr
        size = sum(p.numel() for p in params)
        dtype, device = params[0].dtype, params[0].device
        # pairs[slot, 0] = s, pairs[slot, 1] = y, in the parameters' precision (as torch keeps them); ``order``
        # lists the filled slots oldest first.
        self.pairs = torch.zeros(history, 2, size, dtype=dtype, device=device)
        self.sy = torch.zeros(history, history, dtype=torch.float64, device=device)  # sy[a, b] = s_a · y_b
        self.yy = torch.zeros_like(self.sy)  # yy[a, b] = y_a · y_b
        self.order: list[int] = []
        self.resets = 0
        self.d: torch.Tensor | None = None
        self.prev_g: torch.Tensor | None = None

    def _stored(self) -> torch.Tensor:
        """The filled slots as rows s_0, y_0, s_1, y_1, … (a view, no copy)."""
        return self.pairs[: len(self.order)].reshape(2 * len(self.order), self.pairs.shape[-1])

    def _store_and_project(self, g: torch.Tensor, pair: tuple[torch.Tensor, torch.Tensor] | None):
        """Store ``pair = (s, y)`` when given, then return ``S g`` and ``Y g`` (slot order, float64)."""
        if pair is None:
            k = len(self.order)
            products = (g.to(self.pairs.dtype) @ self._stored().T).double().view(k, 2)
            return products[:, 0], products[:, 1]
        s, y = pair
        slot = self.order.pop(0) if len(self.order) == self.history else len(self.order)
        self.pairs[slot, 0], self.pairs[slot, 1] = s, y
        self.order.append(slot)
        k = len(self.order)
        # (3 × n) @ (n × 2k) runs as fast as one matrix-vector product here; (2k × n) @ (n × 3) took twice as long.
        rows = torch.stack([g, s, y]).to(self.pairs.dtype)
        # products[0|1|2, i, 0] = (g|s|y) · s_i and products[0|1|2, i, 1] = (g|s|y) · y_i, new pair included.
        products = (rows @ self._stored().T).double().view(3, k, 2)
        self.sy[slot, :k] = products[1, :, 1]
        self.sy[:k, slot] = products[2, :, 0]
        self.yy[slot, :k] = self.yy[:k, slot] = products[2, :, 1]
        return products[0, :, 0], products[0, :, 1]

    def _inverse_hessian_times(self, g: torch.Tensor, sg: torch.Tensor, yg: torch.Tensor) -> torch.Tensor:
        gamma = self.h_diag
        if not self.order:
            return gamma * g
        k, oldest = len(self.order), self.order[0]
        # The ring buffer's slots in time order are a rotation of 0..k-1 starting at the oldest slot, so a roll
        # reorders them (a gather with an index list cost five times as much).
        sy = self._time_order(self.sy[:k, :k], oldest)
        yy = self._time_order(self.yy[:k, :k], oldest)
        sg, yg = torch.roll(sg, -oldest)[:, None], torch.roll(yg, -oldest)[:, None]
        r = torch.triu(sy)
        u = torch.linalg.solve_triangular(r, sg, upper=True)
        w = torch.diagonal(sy)[:, None] * u + gamma * (yy @ u) - gamma * yg
        first = torch.linalg.solve_triangular(r.T, w, upper=False)
        # H g = gamma g + S^T first - gamma Y^T u, as one product with the interleaved buffer (back in slot order).
        coefficients = torch.roll(torch.cat([first, -gamma * u], dim=1), oldest, dims=0)
        along = coefficients.reshape(-1).to(self.pairs.dtype) @ self._stored()
        return gamma * g + along.double()

    @staticmethod
    def _time_order(matrix: torch.Tensor, oldest: int) -> torch.Tensor:
        return torch.roll(matrix, (-oldest, -oldest), (0, 1)) if oldest else matrix

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor]) -> None:
        with torch.enable_grad():
            closure()
        g = torch.cat([p.grad.reshape(-1) for p in self.params]).double()
        if float(g.abs().max()) <= 1e-7:
            return
        self.n_iter += 1
        if self.n_iter == 1 or self.prev_g is None or self.d is None:
            d, self.h_diag = -g, 1.0
            self.t = min(1.0, 1.0 / float(g.abs().sum())) * self.lr
        else:
            y, s = g - self.prev_g, self.d * self.t
            ys = float(y @ s)
            pair = (s, y) if ys > 1e-10 else None
            if pair is not None:
                self.h_diag = ys / float(y @ y)
            sg, yg = self._store_and_project(g, pair)
            d = -self._inverse_hessian_times(g, sg, yg)
            self.t = self.lr
        if float(g @ d) > -1e-9 and self.order:
            # Not a descent direction: forget the curvature pairs and restart from steepest descent.
            self.order, self.resets = [], self.resets + 1
            d, self.h_diag = -g, 1.0
            self.t = min(1.0, 1.0 / float(g.abs().sum())) * self.lr
        if self.max_step is not None:
            largest = float(d.abs().max()) * self.t
            if largest > self.max_step:
                # Shorten the step, not the direction: the next curvature pair is the step actually taken.
                self.t, self.capped = self.t * self.max_step / largest, self.capped + 1
        self.prev_g, self.d = g, d
        if float(g @ d) > -1e-9:
            return
        offset = 0
        for p in self.params:
            n = p.numel()
            p.add_(d[offset:offset + n].view_as(p).to(p.dtype), alpha=self.t)
            offset += n
