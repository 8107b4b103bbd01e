"""What a results file records about where it was measured, beyond the
versions: the CPU model and the package's commit."""

import os
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
