"""What a user installs: the sdist and wheel, their metadata, and the import.

The distributions are built from a copy of the source tree with
`python -m build --no-isolation` (sdist first, then the wheel from the
unpacked sdist, so a file missing from the sdist breaks the wheel too):
nothing is downloaded and nothing is written into the working tree. The
unpacked sdist collects its own test suite.
"""

import ast
import email.parser
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile

import pytest
from packaging.requirements import Requirement

import conv_self_attention

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "conv_self_attention"
BACKENDS = ("tensorflow", "jax", "torch")

# Environments, caches and build outputs: never part of a distribution.
NOT_SOURCE = (
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    ".hypothesis",
    ".pytest_cache",
    ".ruff_cache",
    ".ipynb_checkpoints",
    "demo_output",
)
# Directories that belong to the sdist (for running the tests) but never to
# the wheel, which holds the package only.
SDIST_ONLY = ("tests", "examples", "notebooks", "docs", "benchmarks")
# Not in either: the CI machine's set-up.
NEVER_SHIPPED = (".ci",)

pytestmark = pytest.mark.once


def files_under(directory):
    """Paths of the source files under `directory`, relative to it."""
    return {
        path.relative_to(directory).as_posix()
        for path in directory.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and path.suffix != ".pyc"
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Builds the sdist and the wheel; returns (source copy, sdist, wheel)."""
    tmp = tmp_path_factory.mktemp("packaging")
    # A copy, so that the build's egg-info and build/ folders do not land in
    # the working tree, and the expected file lists below see the same files
    # as the build.
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    outdir = tmp / "dist"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--no-isolation",
            "--outdir",
            str(outdir),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=900,  # a hang; a loaded machine builds slowly
    )
    assert result.returncode == 0, (
        f"python -m build failed:\n{result.stdout[-4000:]}\n"
        f"{result.stderr[-4000:]}"
    )
    (sdist,) = outdir.glob("*.tar.gz")
    (wheel,) = outdir.glob("*.whl")
    return source, sdist, wheel


@pytest.fixture(scope="module")
def wheel_files(built):
    _, _, wheel = built
    with zipfile.ZipFile(wheel) as archive:
        return {
            name: archive.read(name) for name in archive.namelist()
        }


@pytest.fixture(scope="module")
def metadata(wheel_files):
    (name,) = [n for n in wheel_files if n.endswith(".dist-info/METADATA")]
    return email.parser.Parser().parsestr(wheel_files[name].decode())


@pytest.fixture(scope="module")
def sdist_files(built):
    _, sdist, _ = built
    with tarfile.open(sdist) as archive:
        names = [member.name for member in archive if member.isfile()]
    # Drop the `conv_self_attention-<version>/` top folder.
    return {name.split("/", 1)[1] for name in names}


def test_wheel_holds_the_package_and_every_module(built, wheel_files):
    source, _, _ = built
    expected = {
        f"{PACKAGE}/{name}" for name in files_under(source / "src" / PACKAGE)
    }
    assert any(name.endswith(".py") for name in expected)
    package_files = {
        name for name in wheel_files if ".dist-info/" not in name
    }
    assert package_files == expected


def test_wheel_holds_no_tests_notebooks_benchmarks_or_results(wheel_files):
    for name in wheel_files:
        top = name.split("/", 1)[0]
        assert top == PACKAGE or top.endswith(".dist-info"), name
        parts = set(name.split("/"))
        assert not parts & {*SDIST_ONLY, *NEVER_SHIPPED, "results"}, name
        assert not name.endswith(".ipynb"), name


def test_wheel_metadata(metadata, wheel_files):
    assert metadata["Name"] == "conv-self-attention"
    assert metadata["Version"] == conv_self_attention.__version__
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    # The SPDX expression replaces the deprecated licence classifier.
    classifiers = metadata.get_all("Classifier") or []
    assert not [c for c in classifiers if c.startswith("License ::")]
    assert metadata["Requires-Python"] == ">=3.11"
    (licence,) = [
        name
        for name in wheel_files
        if name.endswith(".dist-info/licenses/LICENSE")
    ]
    assert wheel_files[licence] == (ROOT / "LICENSE").read_bytes()
    assert b"Apache License" in wheel_files[licence]


def test_wheel_declares_every_extra(metadata):
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = set(pyproject["project"]["optional-dependencies"])
    assert extras >= {
        "tensorflow",
        "tensorflow-cpu",
        "jax",
        "torch",
        "viz",
        "demo",
        "dev",
    }
    assert set(metadata.get_all("Provides-Extra")) == extras


@pytest.mark.parametrize(
    "extra, platform, expected",
    [
        # The full build, so GPU users can add `tensorflow[and-cuda]` and an
        # installed `tensorflow` is not joined by `tensorflow-cpu`.
        ("tensorflow", "linux", {"tensorflow"}),
        ("tensorflow", "win32", {"tensorflow"}),
        ("tensorflow", "darwin", {"tensorflow"}),
        ("tensorflow-cpu", "linux", {"tensorflow-cpu"}),
        ("tensorflow-cpu", "win32", {"tensorflow-cpu"}),
        # No CPU-only build exists for macOS.
        ("tensorflow-cpu", "darwin", {"tensorflow"}),
        ("jax", "linux", {"jax"}),
        ("torch", "linux", {"torch"}),
    ],
)
def test_backend_extras_install_the_right_framework(
    metadata, extra, platform, expected
):
    environment = {"extra": extra, "sys_platform": platform}
    names = set()
    for line in metadata.get_all("Requires-Dist"):
        requirement = Requirement(line)
        marker = requirement.marker
        # Only what this extra adds, not the package's own dependencies.
        if marker is not None and marker.evaluate(environment):
            if not marker.evaluate({**environment, "extra": "__none__"}):
                names.add(requirement.name)
    assert names == expected


def test_sdist_holds_sources_tests_and_docs(built, sdist_files):
    source, _, _ = built
    for name in (
        "pyproject.toml",
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "MANIFEST.in",
        "Makefile",
        "mkdocs.yml",
        "PKG-INFO",
    ):
        assert name in sdist_files
    for directory in ("src/" + PACKAGE, *SDIST_ONLY):
        expected = {
            f"{directory}/{name}" for name in files_under(source / directory)
        }
        assert expected, directory
        assert expected <= sdist_files, expected - sdist_files


def test_sdist_leaves_out_ci_set_up_and_caches(sdist_files):
    for name in sdist_files:
        parts = name.split("/")
        assert parts[0] not in NEVER_SHIPPED, name
        assert "__pycache__" not in parts and not name.endswith(".pyc"), name


def test_unpacked_sdist_collects_every_test_module(built, tmp_path):
    """`pytest --collect-only` in the unpacked sdist, on its own package:
    no error, no module skipped (say for a file it lacks), and tests from
    every test module."""
    _, sdist, _ = built
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path, filter="data")
    (root,) = tmp_path.iterdir()
    env = dict(os.environ, PYTHONPATH=str(root / "src"), KERAS_BACKEND="jax")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-rs",
         "-p", "no:cacheprovider", "tests"],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=900,  # a hang; a loaded machine builds slowly
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert "tests collected" in summary, output[-3000:]
    for word in ("error", "skipped"):
        assert word not in summary, output[-3000:]
    assert "ERROR" not in output and "SKIPPED" not in output, output[-3000:]
    lines = result.stdout.splitlines()
    collected = {line.split("::")[0] for line in lines if "::" in line}
    modules = {
        path.relative_to(root).as_posix()
        for path in (root / "tests").glob("test_*.py")
    }
    assert collected == modules


def test_version_is_one_literal_and_in_the_changelog():
    # setuptools reads `attr:` versions statically when the assignment is a
    # plain literal, so building does not import Keras or a backend.
    tree = ast.parse((ROOT / "src" / PACKAGE / "__init__.py").read_text())
    assigned = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(
            isinstance(target, ast.Name) and target.id == "__version__"
            for target in node.targets
        )
    ]
    assert len(assigned) == 1
    assert isinstance(assigned[0], ast.Constant)
    assert assigned[0].value == conv_self_attention.__version__
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"]
    assert "version" in pyproject["project"]["dynamic"]
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"\n## {conv_self_attention.__version__}\n" in changelog


def import_without(module, keras_backend, tmp_path):
    """Imports the package in a fresh process in which `module` is absent."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "KERAS_BACKEND"
    }
    if keras_backend is not None:
        env["KERAS_BACKEND"] = keras_backend
    # A fresh Keras home: no keras.json choosing a backend.
    env["KERAS_HOME"] = str(tmp_path / "keras_home")
    # `None` in sys.modules makes `import module` raise ModuleNotFoundError,
    # as when the framework is not installed.
    code = f"import sys; sys.modules[{module!r}] = None; import {PACKAGE}"
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,  # a hang; a loaded machine imports slowly
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_backend_says_what_to_install(backend, tmp_path):
    result = import_without(backend, backend, tmp_path)
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()
    first = next(
        i
        for i, line in enumerate(message)
        if line.startswith("ModuleNotFoundError: conv_self_attention")
    )
    text = "\n".join(message[first:])
    assert f"'{backend}' backend" in text
    assert f"module '{backend}' is not installed" in text
    assert f"KERAS_BACKEND={backend}" in text
    for extra in (*BACKENDS, "tensorflow-cpu"):
        assert f"[{extra}]" in text
    # What works today first (a clone or the built wheel); the package
    # index's form only as what applies once the package is published.
    assert 'pip install ".[jax]"' in text
    published = text.index("once the package is published")
    assert text.index('pip install ".[jax]"') < published
    assert text.index("conv-self-attention[jax]") > published


def test_missing_default_backend_mentions_the_unset_setting(tmp_path):
    result = import_without("tensorflow", None, tmp_path)
    assert result.returncode != 0
    assert "KERAS_BACKEND is not set" in result.stderr
    assert "'tensorflow' backend" in result.stderr


def test_other_missing_modules_are_not_reworded(tmp_path):
    # Only a missing backend gets the install advice; anything else keeps
    # Python's own error.
    result = import_without("keras", "jax", tmp_path)
    assert result.returncode != 0
    assert "No module named 'keras'" in result.stderr or (
        "import of keras halted" in result.stderr
    )
    assert "needs a Keras backend" not in result.stderr
