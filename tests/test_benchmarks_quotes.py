"""One source for every published benchmark number: each figure quoted in
the README, the docs and the docstrings carries a marker naming its
results file and key and equals that file's value; in the passages that
report measurements, no number goes unmarked; every results file says
where, when and on what it was measured; every generated table equals
its JSON (`benchmarks/common/quotes.py`, `tables.py`)."""

import pathlib
import re
import sys
import types

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks" / "common")]

import quotes  # noqa: E402
import tables  # noqa: E402

pytestmark = pytest.mark.once

QUOTING = [ROOT / "README.md", ROOT / "benchmarks" / "README.md",
           *sorted((ROOT / "docs").rglob("*.md")),
           *sorted((ROOT / "src").rglob("*.py")),
           *sorted((ROOT / "benchmarks").rglob("*.py"))]
# Passages that report measurements, (file, first line, line after): a
# number with a unit there must be quoted with a marker.
PASSAGES = [
    ("README.md", "## Benchmarks", "## Documentation"),
    ("benchmarks/README.md", "", None),
    ("docs/benchmarks.md", "", None),
    ("docs/guide/gpu.md", "## What has been measured", None),
    ("docs/guide/kernels.md", "## Block sizes", "\n## "),
    ("docs/guide/deploying.md", "Working memory of one batch-1",
     "[`tests/test_export_pooling.py`"),
    ("docs/guide/deploying.md", "## Quantized LiteRT",
     "Dynamic-range quantization (no"),
    ("docs/guide/attention-maps.md", "Measured on 2026-12",
     "`AttentionMonitor(inputs"),
    ("src/conv_self_attention/kernels/auto.py", "", '"""\n\nfrom'),
    ("src/conv_self_attention/kernels/auto.py", "# Largest N x M",
     "# Head widths"),
    ("src/conv_self_attention/kernels/chunked.py", "# Logit elements",
     "CPU_BLOCK_ELEMENTS"),
]
# A number or a range (`13-17 GiB`) with a unit; `128x128` is a size.
UNIT_NUMBER = re.compile(
    r"(?<![\w.*])\d+(?:\.\d+)?(?:-\d+(?:\.\d+)?)?"
    r"(?:x| ?(?:ms|s|GiB|MiB|GFLOP/s|TFLOP/s))(?![\w²])")


def _quotes():
    for path in QUOTING:
        for value, name, key in quotes.quotes(path.read_text()):
            yield path.relative_to(ROOT), value, name, key


def test_every_quoted_figure_equals_its_results_file():
    found, problems = {}, []
    count = 0
    for path, value, name, key in _quotes():
        count += 1
        if name not in found:
            try:
                found[name] = quotes.figures(name)
            except FileNotFoundError:
                found[name] = None
        figures = found[name]
        if figures is None:
            problems.append(f"{path}: no results file {name}.json")
        elif key not in figures:
            problems.append(f"{path}: {name}.json has no {key!r}")
        elif not quotes.matches(value, figures[key]):
            problems.append(f"{path}: quotes {value}, {name} {key} is "
                            f"{figures[key]}")
    assert not problems, "\n".join(problems)
    assert count >= 50, f"only {count} markers found"


def _passage(text, first, after):
    start = text.index(first) if first else 0
    end = text.index(after, start + 1) if after else len(text)
    return text[start:end]


@pytest.mark.parametrize("path, first, after", PASSAGES)
def test_measurements_are_quoted_with_markers(path, first, after):
    text = _passage((ROOT / path).read_text(), first, after)
    text = quotes.MARKER.sub("", text)
    # Code, included files and the markers' own names are no quotes.
    text = re.sub(r"^```.*?^```$", "", text, flags=re.M | re.S)
    text = re.sub(r"--8<--.*", "", text)
    unmarked = [m[0] for m in UNIT_NUMBER.finditer(text)]
    assert not unmarked, f"{path}: numbers without a marker: {unmarked}"


def test_every_results_file_says_where_and_when():
    for path in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        result = quotes.load(path.stem)
        assert re.match(r"\d{4}-\d{2}-\d{2}", result["started_utc"]), path
        assert result.get("release"), path
        assert result.get("commit"), path
        assert result.get("machine"), path
        assert result.get("versions") or result["machine"].get("versions")


def test_generated_tables_equal_their_json():
    for path, text in tables.generated().items():
        assert path.read_text() == text, (
            f"{path.name} differs from its JSON: run python "
            "benchmarks/common/tables.py")


def test_markers_compare_rounded_to_the_quoted_digits():
    assert quotes.matches("0.18", 0.1763) and not quotes.matches("0.17",
                                                                 0.1763)
    assert quotes.matches("16", 16.06) and quotes.matches("1e-5", 1e-5)
    assert quotes.matches("2026-11-28", "2026-11-28")
    text = ("0.18x<!-- from attention_torch 128x4/auto/fwd+bwd/vs_naive -->"
            " and 30.9 ms [from gpu_h200 jax/float32/128x8/naive/ms]")
    assert quotes.quotes(text) == [
        ("0.18", "attention_torch", "128x4/auto/fwd+bwd/vs_naive"),
        ("30.9", "gpu_h200", "jax/float32/128x8/naive/ms")]


def test_export_memory_writes_a_results_file_the_markers_read(
        tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks" / "export"))
    import export_memory

    path = tmp_path / "export_memory_x.json"
    backend = "jax"  # this pass's; another stands in for a second one
    monkeypatch.setitem(sys.modules, "other", types.SimpleNamespace(
        __version__="1.0"))
    export_memory.write_results(path, "other", 64,
                                {"other/dense/onnx/working_mib": 9})
    export_memory.write_results(path, backend, 64, {
        f"{backend}/chunked/onnx/working_mib": 55,
        f"{backend}/chunked/chunk_size": 128})
    figures = quotes.figures("export_memory_x", tmp_path)
    assert figures["other/dense/onnx/working_mib"] == 9
    assert figures[f"{backend}/chunked/chunk_size"] == 128
    result = quotes.load("export_memory_x", tmp_path)
    assert re.match(r"\d{4}-\d{2}-\d{2}", result["started_utc"])
    assert result["release"] and result["machine"]["cpus"]
    assert set(result["versions"]) >= {"keras", "other", backend}
    text = "55 MiB<!-- from export_memory_x jax/chunked/onnx/working_mib -->"
    ((value, _, key),) = quotes.quotes(text)
    assert quotes.matches(value, figures[key])
