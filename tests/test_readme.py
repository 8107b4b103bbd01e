"""The README's quick start runs as written."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def quick_start_code():
    text = README.read_text()
    section = text.split("## Quick start", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_quick_start_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(quick_start_code(), "README quick start", "exec"), namespace)
    assert namespace["model"].output_shape == (None, 10)
    assert (tmp_path / "model.keras").exists()
