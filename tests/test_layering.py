"""No import climbs back up the package's layering (DESIGN.md): a module
imports only from its own subpackage and the ones below it, convenience
re-exports and imports inside functions included."""

import ast
import pathlib

import pytest

pytestmark = pytest.mark.once

PACKAGE = pathlib.Path(__file__).parents[1] / "src" / "conv_self_attention"
# Lowest first. `convert` (the BigGAN weight import) and `export` (checked
# `model.export`) sit on the layers.
ORDER = ("checks", "kernels", "layers", "convert", "export", "diagnostics",
         "visualize", "demo")


def _part(module_name):
    """`kernels` of `conv_self_attention.kernels.chunked`, else `None`."""
    parts = module_name.split(".")
    if parts[0] != "conv_self_attention" or len(parts) < 2:
        return None
    return parts[1]


def _imported(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "conv_self_attention":
                yield from (f"conv_self_attention.{a.name}"
                            for a in node.names)
            else:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_imports_only_go_down():
    climbs = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative == pathlib.Path("__init__.py"):
            continue  # The package's public API gathers every layer.
        own = relative.parts[0].removesuffix(".py")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for module in _imported(tree):
            part = _part(module)
            if part in ORDER and ORDER.index(part) > ORDER.index(own):
                climbs.append(f"{relative} imports {module}")
    assert not climbs, climbs


def test_the_order_names_every_part():
    parts = {path.name.removesuffix(".py") for path in PACKAGE.iterdir()
             if not path.name.startswith("__")}
    assert parts <= set(ORDER), parts - set(ORDER)
