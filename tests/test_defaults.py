"""The shared defaults: the run directory rule, the quiet environment, device names."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fedleak.defaults import RUNS_ROOT, default_run_dir, run_dir_for
from fedleak.devices import resolve_device
from fedleak.errors import UserError
from fedleak.quiet import quiet_env


def test_run_dir_prefers_out_then_output_dir_then_a_new_timestamped_folder():
    assert run_dir_for(Path("x"), "y", "smoke") == Path("x")
    assert run_dir_for(None, "y", "smoke") == Path("y")
    made = run_dir_for(None, None, "smoke")
    assert made.parent == RUNS_ROOT and made.name.startswith("smoke-")
    assert default_run_dir(None).name.startswith("scenario-")


def test_quiet_env_keeps_the_users_settings_unless_verbose():
    assert quiet_env(False, {})["FLWR_LOG_LEVEL"] == "WARNING"
    assert "FLWR_LOG_LEVEL" not in quiet_env(False, {"FLWR_LOG_LEVEL": "DEBUG"})
    assert quiet_env(True, {"FLWR_LOG_LEVEL": "DEBUG"})["FLWR_LOG_LEVEL"] == "INFO"
    assert quiet_env(True, {})["FLWR_TELEMETRY_ENABLED"] == "0" and "RAY_DEDUP_LOGS" not in quiet_env(True, {})


def test_device_names():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        assert resolve_device("cuda") == "cuda"
        with pytest.raises(UserError, match="--device cuda"):
            resolve_device("cuda", strict=True)
