"""Every module imports at run time (type-only names must stay behind TYPE_CHECKING)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import bench
import federation
import node

MODULES = sorted(
    info.name
    for package in (node, federation, bench)
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}.")
    # Alembic runs the migration scripts itself, inside its own context.
    if ".migrations." not in info.name
)


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name: str) -> None:
    importlib.import_module(name)
