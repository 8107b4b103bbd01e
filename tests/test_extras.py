"""Running the demo or a plot helper without its extra raises an error that
names the extra to install (the Install page lists the extras)."""

import importlib
import sys

import pytest

pytestmark = pytest.mark.once


def hide(monkeypatch, *names):
    """Makes `import name` fail as if the package were not installed."""
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)


def test_a_plot_without_matplotlib_names_the_viz_extra(monkeypatch):
    from conv_self_attention import plot_attention_statistics

    hide(monkeypatch, "matplotlib", "matplotlib.pyplot")
    logs = {"attention/attention/gamma": [0.0, 0.1]}
    with pytest.raises(ModuleNotFoundError, match=r'"\.\[jax,viz\]"'):
        plot_attention_statistics(logs)


@pytest.mark.parametrize("missing", ["matplotlib", "sklearn", "scipy"])
def test_the_demo_without_its_extra_names_it(monkeypatch, missing):
    hide(monkeypatch, missing)
    for name in [n for n in sys.modules if n.startswith(
            "conv_self_attention.demo")]:
        monkeypatch.delitem(sys.modules, name)
    # What `python -m conv_self_attention.demo` imports first.
    with pytest.raises(ModuleNotFoundError, match=r"`demo` extra") as error:
        importlib.import_module("conv_self_attention.demo.__main__")
    assert missing in str(error.value)
    assert '".[jax,demo]"' in str(error.value)
