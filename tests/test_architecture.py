"""The layer rule of DESIGN.md: dependencies point down, the model is pure standard library."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ocilab"
LAYERS = {
    "errors": 0,
    "model": 1,
    "tar": 2,
    "stores": 3,
    "engines": 4,
    "operations": 4,
    "workshop": 4,
    "present": 5,
    "api": 5,
    "lab": 5,
    "cli": 5,
}
THIRD_PARTY_FORBIDDEN_IN_MODEL = {
    "requests",
    "docker",
    "pandas",
    "matplotlib",
    "ipywidgets",
    "tqdm",
    "zlib_ng",
    "backports",
}


def layer_of(module: str) -> int | None:
    """The layer of an ``ocilab.x...`` module name, None for the package root."""
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def imports_of(path: Path) -> list[tuple[str, int]]:
    """Every absolute import in a file (top-level and inside functions), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
    return found


def modules() -> list[tuple[str, Path]]:
    result = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(relative.parts).removesuffix(".__init__")
        result.append((name, path))
    return result


def test_every_module_belongs_to_a_layer() -> None:
    unplaced = [name for name, _ in modules() if name not in ("ocilab", "ocilab.__main__") and layer_of(name) is None]
    assert unplaced == []


@pytest.mark.parametrize(("name", "path"), modules(), ids=[name for name, _ in modules()])
def test_imports_point_down(name: str, path: Path) -> None:
    own = layer_of(name)
    if own is None:
        return
    upward = []
    for imported, line in imports_of(path):
        if not imported.startswith("ocilab."):
            if own <= 1 and imported.split(".")[0] not in sys.stdlib_module_names:
                upward.append(f"line {line}: {imported} (the model is standard library only)")
            continue
        target = layer_of(imported)
        if target is not None and target > own:
            upward.append(f"line {line}: {imported} (layer {target} > {own})")
    assert upward == []


def test_model_never_imports_heavy_packages() -> None:
    for name, path in modules():
        if layer_of(name) in (0, 1):
            roots = {imported.split(".")[0] for imported, _ in imports_of(path)}
            assert not roots & THIRD_PARTY_FORBIDDEN_IN_MODEL, name


def test_stores_shape_no_tables() -> None:
    """Rows, tables and plots are presentation: no store imports pandas, matplotlib or ipywidgets."""
    offenders = []
    for name, path in modules():
        if name.startswith("ocilab.stores"):
            roots = {imported.split(".")[0] for imported, _ in imports_of(path)}
            offenders += [f"{name} imports {root}" for root in sorted(roots & {"pandas", "matplotlib", "ipywidgets"})]
    assert offenders == []


def test_every_top_level_name_is_exported_and_loads_lazily() -> None:
    """``import ocilab`` loads no submodule; each name in ``__all__`` loads on first use."""
    import subprocess

    program = (
        "import sys, ocilab\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('ocilab.'))\n"
        "assert not loaded, loaded\n"
        "assert sorted(ocilab.__all__) == sorted(ocilab._EXPORTS)\n"
        "assert all(getattr(ocilab, name) is not None for name in ocilab.__all__)\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
