"""The package's layers (README, Architecture): every import inside mlassets points to its own layer or one below."""

import ast
from pathlib import Path

import pytest

from mlassets_tests.conftest import REPO

# Lowest first; a module belongs to the layer of its longest matching prefix.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("mlassets.paths", "mlassets.names", "mlassets.environment_choice", "mlassets.partitions",
                    "mlassets.metadata")),
    ("stack and data", ("mlassets.stack", "mlassets.datasets", "mlassets.tables")),
    ("models", ("mlassets.models",)),
    ("resources", ("mlassets.resources", "mlassets.pipes.emr", "mlassets.environments")),
    ("streaming", ("mlassets.streaming",)),
    ("assets", ("mlassets.assets", "mlassets.pipes", "mlassets.checks", "mlassets.sensors", "mlassets.automation")),
    ("definitions", ("mlassets.jobs", "mlassets.definitions")),
    ("entry points", ("mlassets.main_run", "mlassets.cli")),
)


def layer_of(module: str) -> int:
    """The index in LAYERS of the module's longest matching prefix."""
    matches = [(len(prefix), index) for index, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    if not matches:
        raise LookupError(f"{module} is in no layer: add it to LAYERS and to the README's Architecture section")
    return max(matches)[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> list[str]:
    """The mlassets modules a file imports (absolute imports; the package uses no relative ones)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import"
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return [n for n in names if n == "mlassets" or n.startswith("mlassets.")]


SOURCES = sorted(p for p in (REPO / "mlassets").rglob("*.py") if p != REPO / "mlassets" / "__init__.py")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_imports_a_higher_layer(path: Path) -> None:
    own = layer_of(module_name(path))
    upward = [(name, LAYERS[layer_of(name)][0]) for name in imported(path) if name != "mlassets"
              and layer_of(name) > own]
    assert not upward, f"{module_name(path)} ({LAYERS[own][0]}) imports from higher layers: {upward}"


def test_the_cli_and_the_cluster_scripts_import_no_asset_module() -> None:
    scripts = [REPO / "mlassets" / "cli.py", *sorted((REPO / "mlassets" / "pipes" / "scripts").glob("*.py"))]
    assert len(scripts) > 1
    for path in scripts:
        assets = [n for n in imported(path) if n.startswith("mlassets.assets")]
        assert not assets, f"{path.relative_to(REPO)} imports {assets}"


def test_an_unknown_module_is_named() -> None:
    with pytest.raises(LookupError, match="mlassets.nowhere is in no layer"):
        layer_of("mlassets.nowhere")
    assert layer_of("mlassets.pipes.emr") < layer_of("mlassets.pipes.assets")
