"""Makes `.gpu/`, what `benchmarks/gpu/run_gpu.sh` needs on a GPU machine that
has torch and JAX built for CUDA but maybe neither Keras, pytest nor
hypothesis, and no package registry.

    python benchmarks/gpu/gpu_payload.py [--python-versions 3.11 3.12 ...]

It holds Keras, pytest and hypothesis at the versions installed in this
environment, with every package they declare as a dependency for the
target Pythons, except what the machine's torch and JAX bring (NumPy,
ml-dtypes) and h5py (only Keras' legacy `.h5` format imports it). The
wheels come from pip's configured index (`pip download --only-binary`)
and are unpacked (a wheel is a zip of the installed files), so nothing
needs pip there:

    site/       the pure-Python packages, one copy for every Python
    cp3XY/      the compiled ones (optree), one folder per CPython version
    MANIFEST.txt   what it holds (run_gpu.sh stops where it is missing)

`run_gpu.sh` puts `cp3XY/` and `site/` first on `PYTHONPATH`, so these
versions are used even where the machine has others. The package itself
is imported from the checkout's `src/`: a payload never holds a stale copy
of it. The payload must stay within 64 MiB (checked), and no file in it is
committed (`.gitignore`).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.utils import parse_wheel_filename

ROOTS = ("keras", "pytest", "hypothesis")
# Present wherever torch or JAX is (compiled against the machine's NumPy:
# a second copy would shadow it), or imported only by the legacy .h5 format.
LEFT_TO_THE_MACHINE = {"numpy", "ml-dtypes", "h5py"}
PYTHON_VERSIONS = ("3.11", "3.12", "3.13", "3.14")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64")
LIMIT_MIB = 64
# The checkout: two folders above this one.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _environment(version):
    # Markers as a Linux CPython `version` evaluates them; "extra" empty:
    # optional dependencies are not carried.
    return {"python_version": version, "python_full_version": version + ".0",
            "sys_platform": "linux", "platform_system": "Linux",
            "os_name": "posix", "platform_machine": "x86_64",
            "implementation_name": "cpython", "extra": ""}


def requirements(roots=ROOTS, versions=PYTHON_VERSIONS):
    """`{name: version}` of `roots` and everything they need on any of
    `versions`, as installed here, less `LEFT_TO_THE_MACHINE`."""
    found, todo = {}, [canonicalize_name(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in found or name in LEFT_TO_THE_MACHINE:
            continue
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(
                f"{name} is needed on the GPU machine but not installed "
                "here: install the dev extra first"
            ) from None
        found[name] = distribution.version
        for line in distribution.requires or []:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is None or any(
                marker.evaluate(_environment(v)) for v in versions
            ):
                todo.append(canonicalize_name(requirement.name))
    return dict(sorted(found.items()))


def download(pins, versions, folder):
    """Wheels of `pins` for each CPython of `versions` into `folder`."""
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    for version in versions:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--only-binary=:all:", "--python-version", version,
             "--implementation", "cp", *platforms, "--dest", folder,
             *(f"{name}=={pin}" for name, pin in pins.items())],
            check=True,
        )


def target_folder(wheel):
    """`site` for a pure-Python wheel, else `cp3XY` of its interpreter."""
    tags = parse_wheel_filename(os.path.basename(wheel))[3]
    if all(t.abi == "none" and t.platform == "any" for t in tags):
        return "site"
    interpreters = {t.interpreter for t in tags}
    if len(interpreters) != 1:
        raise SystemExit(f"{wheel}: one CPython per compiled wheel expected")
    return interpreters.pop()


def unpack(wheel, folder):
    with zipfile.ZipFile(wheel) as archive:
        # A .data folder would need pip's install scheme; none of ours has.
        if any(n.split("/", 1)[0].endswith(".data")
               for n in archive.namelist()):
            raise SystemExit(f"{wheel} has a .data folder: install it instead")
        archive.extractall(folder)


def folder_mib(folder):
    total = sum(os.path.getsize(os.path.join(d, f))
                for d, _, files in os.walk(folder) for f in files)
    return total / 2**20


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python-versions", nargs="+",
                        default=list(PYTHON_VERSIONS))
    parser.add_argument("--output", default=os.path.join(ROOT, ".gpu"),
                        help="replaced as a whole (default: .gpu)")
    args = parser.parse_args(argv)
    pins = requirements(versions=args.python_versions)
    shutil.rmtree(args.output, ignore_errors=True)
    os.makedirs(args.output)
    with tempfile.TemporaryDirectory() as wheels:
        download(pins, args.python_versions, wheels)
        placed = {}
        for name in sorted(os.listdir(wheels)):
            folder = target_folder(name)
            unpack(os.path.join(wheels, name), os.path.join(args.output,
                                                            folder))
            placed.setdefault(folder, []).append(name)
    compiled = sorted(f for f in placed if f != "site")
    lines = [f"{name} {pin}" for name, pin in pins.items()]
    lines += [f"compiled for: {' '.join(compiled)}"]
    lines += [f"{folder}: {' '.join(names)}"
              for folder, names in sorted(placed.items())]
    with open(os.path.join(args.output, "MANIFEST.txt"), "w") as file:
        file.write("\n".join(lines) + "\n")
    size = folder_mib(args.output)
    print("\n".join(lines))
    if size > LIMIT_MIB:
        raise SystemExit(f"The payload is {size:.1f} MiB, over {LIMIT_MIB}.")
    print(f"Payload ready in {os.path.relpath(args.output)} ({size:.1f} MiB, "
          "ignored by git): carry it with the checkout.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
