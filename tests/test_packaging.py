"""Packaging facts a user or an institution checks before adopting fedleak: licence, changelog, typing marker."""

from __future__ import annotations

import tomllib
from pathlib import Path

import fedleak

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def test_license_file_is_the_mit_text_pyproject_declares() -> None:
    assert PROJECT["license"] == "MIT"
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Copyright (c)" in text and "the fedleak authors" in text
    assert "Permission is hereby granted, free of charge" in text


def test_changelog_has_an_entry_for_this_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{PROJECT['version']}]" in changelog


def test_package_version_matches_pyproject() -> None:
    assert fedleak.__version__ == PROJECT["version"]


def test_py_typed_marker_ships_with_the_package() -> None:
    assert (ROOT / "fedleak" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["fedleak"]
    assert "Typing :: Typed" in PROJECT["classifiers"]
