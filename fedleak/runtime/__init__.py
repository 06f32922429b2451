"""Attack executors: where attacks run while federated training goes on.

``make_executor(kind, …)`` picks one; both implement :class:`AttackExecutor`. The in-process executor (``local``)
serves tests and small runs; the Ray actor pool (``ray``) runs attacks beside Flower's simulation, on a GPU when
there is one. Ray is imported only by the pool.
"""

from fedleak.devices import resolve_device
from fedleak.runtime.executor import (
    AttackExecutor,
    AttackFuture,
    AttackOutcome,
    job_seed,
)
from fedleak.runtime.factory import make_executor

__all__ = ["AttackExecutor", "AttackFuture", "AttackOutcome", "job_seed", "make_executor", "resolve_device"]
