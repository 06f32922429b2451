"""The environment that keeps Flower and Ray quiet and local, for this process and for the processes it starts."""

from __future__ import annotations

import os

#: Always set: no telemetry, no dependency installs at run time, Ray leaves CUDA_VISIBLE_DEVICES alone on
#: actors that asked for no GPU, and Ray's crash handler does not take over SIGTERM in the driver (it printed a
#: crash dump and killed the run before fedleak could keep its rows and rebuild the report; fedleak.signals).
ALWAYS = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    "RAY_DISABLE_FAILURE_SIGNAL_HANDLER": "1",
    # After Ctrl-C, Flower's message threads still called Ray once it had shut down, and Ray started a new local
    # instance for them (that outlived the run); fedleak always calls ray.init itself.
    "RAY_ENABLE_AUTO_CONNECT": "0",
}
#: Set unless the user asked for verbose output.
QUIET = {"FLWR_LOG_LEVEL": "WARNING", "RAY_DEDUP_LOGS": "1"}


def quiet_env(verbose: bool, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The variables to add to ``environ`` (default: this process's): the user's own settings win, except that
    ``verbose`` asks Flower for INFO."""
    environ = os.environ if environ is None else environ
    wanted = ALWAYS | ({"FLWR_LOG_LEVEL": "INFO"} if verbose else QUIET)
    added = {key: value for key, value in wanted.items() if key not in environ}
    if verbose:
        added["FLWR_LOG_LEVEL"] = "INFO"
    return added


def configure_logging(verbose: bool) -> None:
    """Quiet Flower and Ray in this process unless ``verbose``. Takes full effect before flwr is first imported."""
    os.environ.update(quiet_env(verbose))
