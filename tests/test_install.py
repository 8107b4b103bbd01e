"""The README's install commands, run as written in a fresh environment.

Each shell block of the README's install section runs with `bash -e` in a
copy of the source tree, in a new virtual environment (`python -m
venv`, no system site-packages, its `bin/` first on `PATH` as activation
does), for the JAX backend: from the clone (`pip install ".[jax]"`), then
in the same environment, the package uninstalled, from the wheel that
`python -m build --wheel` makes. pip may download from
the package index (or the machine's configured mirror). Then, in that
environment and outside the source tree, the package imports and a layer
runs.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
from test_packaging import NOT_SOURCE

import conv_self_attention

ROOT = pathlib.Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.once

SMOKE = (
    "import numpy as np, conv_self_attention as c; "
    "y = c.SelfAttention2D(num_heads=2)(np.ones((1, 4, 4, 16), 'float32')); "
    "print(c.__version__, tuple(y.shape), c.__file__, sep='|')"
)


def install_blocks():
    section = (ROOT / "README.md").read_text()
    section = section.split("<!-- --8<-- [start:install] -->", 1)[1]
    section = section.split("<!-- --8<-- [end:install] -->", 1)[0]
    return re.findall(r"^```bash\n(.*?)^```$", section, re.M | re.S)


def test_the_readme_names_the_clone_and_the_wheel():
    clone, wheel = install_blocks()
    assert 'pip install ".[jax]"' in clone
    assert "python -m build --wheel" in wheel
    # The wheel's name, with this release's version.
    version = conv_self_attention.__version__
    assert f"conv_self_attention-{version}-py3-none-any.whl[jax]" in wheel


def test_install_as_written_in_a_fresh_environment(tmp_path):
    """The clone's block in a new environment, then the wheel's in the
    same one with the package uninstalled first: the wheel's install puts
    the package back (its dependencies are there already, which saves a
    second download of the backend; their requirements are the clone's,
    from the same `pyproject.toml`)."""
    clone, wheel = install_blocks()
    source = tmp_path / "conv-self-attention"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", str(venv)], check=True, timeout=120
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "VIRTUAL_ENV", "KERAS_"))
    }
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        # Bytecode is compiled on first import anyway; skipping it at
        # install time changes nothing the test checks.
        PIP_NO_COMPILE="1",
    )
    uninstall = "pip uninstall --yes conv-self-attention\n"
    for form, block in (("clone", clone), ("wheel", uninstall + wheel)):
        _run_block(form, block, source, env)
        _check_installed(form, venv, tmp_path, env)


def _run_block(form, block, source, env):
    installed = subprocess.run(
        ["bash", "-e", "-c", block],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,  # a hang; measured 20-40 s on 2 loaded cores
    )
    assert installed.returncode == 0, form + installed.stderr[-3000:]


def _check_installed(form, venv, folder, env):
    ran = subprocess.run(
        [str(venv / "bin" / "python"), "-c", SMOKE],
        cwd=folder,
        env=dict(env, KERAS_BACKEND="jax"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, form + ran.stderr[-3000:]
    version, shape, location = ran.stdout.splitlines()[-1].split("|")
    assert version == conv_self_attention.__version__, form
    assert shape == "(1, 4, 4, 16)", form
    # Installed into the new environment, not imported from the source.
    assert location.startswith(str(venv)), form


def test_the_package_index_form_only_as_what_applies_once_published():
    """Wherever the package names `pip install conv-self-attention...`
    (README, pages, the package's own messages), its sentence (or
    admonition) says the package is not published yet or applies once it
    is."""
    sources = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    sources += (ROOT / "src" / "conv_self_attention").rglob("*.py")
    early = {}
    for source in sources:
        text = source.read_text()
        for match in re.finditer(r"pip install \"?conv-self-attention", text):
            before = re.split(r"\.\s|\n\n", text[: match.start()])[-1]
            after = re.split(r"\.\s|\n\n", text[match.end() :])[0]
            if "published" not in (before + after).lower():
                name = source.relative_to(ROOT).as_posix()
                early.setdefault(name, []).append(before[-60:] + "|" + after)
    assert not early, early
