"""Import every module of a package, so that dropping a file into ``attacks/`` or ``models/`` registers it."""

import importlib
import pkgutil


def import_submodules(package_name: str, package_path: list[str], skip: set[str] | None = None) -> None:
    for info in pkgutil.iter_modules(package_path):
        if info.name not in (skip or set()) and not info.name.startswith("_"):
            importlib.import_module(f"{package_name}.{info.name}")
