"""What a results file records about where it was measured, beyond the
versions: the CPU model and the package's commit; and the writer of the
flat results files (`kind: figures`, read by `quotes.py`)."""

import datetime
import json
import os
import platform
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def cpu_model():
    """The CPU's model name (Linux), else None."""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def source_commit():
    """The checkout's commit, `-dirty` when it has changes, else None."""
    try:
        found = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=HERE, capture_output=True, text=True, timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found.stdout.strip() or None


def write_figures(path, scope, figures, backend, **fields):
    """`figures` (`{key: value}`, every key starting `scope/`) into the
    results file `path`, replacing its figures under `scope/` and keeping
    the others, with the machine, date, versions (Keras and `backend`),
    release and commit; `fields` (title, arguments, notes) as given."""
    import keras

    result = {"figures": {}}
    if os.path.exists(path):
        with open(path) as file:
            result = json.load(file)
    model = cpu_model()
    result.update(
        kind="figures", **fields,
        release=__import__("conv_self_attention").__version__,
        commit=source_commit(),
        started_utc=datetime.datetime.now(datetime.UTC).isoformat(
            timespec="seconds"),
        machine={"cpus": os.cpu_count(), "processor": platform.machine(),
                 "cpu_model": model,
                 "description": f"{os.cpu_count()} CPUs "
                 f"({model or 'model not recorded'})"},
    )
    versions = result.setdefault("versions", {})
    versions.pop("note", None)
    versions.update(keras=keras.__version__, python=platform.python_version())
    versions[backend] = __import__(backend).__version__
    result["figures"] = {
        key: value for key, value in result["figures"].items()
        if not key.startswith(f"{scope}/")} | figures
    with open(path, "w") as file:
        json.dump(result, file, indent=1)
        file.write("\n")
