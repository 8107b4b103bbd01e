"""MkDocs hook: every page's footer names the version it documents.

The version is read from `conv_self_attention.__version__` the way the
build reads it (statically, without importing Keras). While the changelog
holds an `## Unreleased` section above that version's, the pages document
those changes too, and the footer says so. mkdocs.yml loads this file
(`hooks:`).
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).parents[2]
INIT = ROOT / "src/conv_self_attention/__init__.py"
CHANGELOG = ROOT / "CHANGELOG.md"


def package_version():
    for node in ast.parse(INIT.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            getattr(target, "id", None) == "__version__"
            for target in node.targets
        ):
            return node.value.value
    raise LookupError(f"no __version__ in {INIT}")


def unreleased():
    """Whether the changelog's first version heading is `## Unreleased`."""
    headings = [line for line in CHANGELOG.read_text().splitlines()
                if line.startswith("## ")]
    return bool(headings) and headings[0] == "## Unreleased"


def on_config(config, **kwargs):
    config.copyright = (
        f"Documentation of conv-self-attention {package_version()}"
    )
    if unreleased():
        config.copyright += (
            " and the changes since, listed under Unreleased in the changelog"
        )
    return config
