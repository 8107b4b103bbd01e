"""MkDocs hook: every page's footer names the version it documents.

The version is read from `conv_self_attention.__version__` the way the
build reads it (statically, without importing Keras). mkdocs.yml loads
this file (`hooks:`).
"""

import ast
import pathlib

INIT = pathlib.Path(__file__).parents[2] / "src/conv_self_attention/__init__.py"


def package_version():
    for node in ast.parse(INIT.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            getattr(target, "id", None) == "__version__"
            for target in node.targets
        ):
            return node.value.value
    raise LookupError(f"no __version__ in {INIT}")


def on_config(config, **kwargs):
    config.copyright = (
        f"Documentation of conv-self-attention {package_version()}"
    )
    return config
