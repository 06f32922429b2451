"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The real-image fixture folder named by ``$FEDLEAK_FIXTURES``; skips the test when unset or absent."""
    value = os.environ.get("FEDLEAK_FIXTURES")
    if not value:
        pytest.skip("FEDLEAK_FIXTURES is not set (point it at the folder of real-image fixtures)")
    path = Path(value)
    if not path.is_dir():
        pytest.skip(f"FEDLEAK_FIXTURES={value} is not a folder")
    return path


@pytest.fixture(scope="session")
def fixture_file(fixtures_dir: Path) -> Callable[[str], Path]:
    """``fixture_file("mnist_test.npz")``: a file of the fixture folder, or skip the test when it is missing."""

    def find(name: str) -> Path:
        path = fixtures_dir / name
        if not path.is_file():
            pytest.skip(f"fixture {name} is missing from {fixtures_dir}")
        return path

    return find


@pytest.fixture
def flower_task_identity():
    """Flower stamps every new Message with the process's task identity, which its runtime sets; a bare test
    process has none, so set one for the duration of a test."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    yield
    TaskIdentity._task_id = TaskIdentity._run_id = TaskIdentity._node_id = None
