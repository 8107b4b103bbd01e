"""The one home of argument checks (`conv_self_attention.checks`): the same
values accepted everywhere (NumPy bools and ints like Python's), stored as
plain Python values, and every refusal worded "what must hold, then
`Received: name=value`"."""

import ast
import json
import pathlib

import numpy as np
import pytest

from conv_self_attention import AttentionMonitor
from conv_self_attention import SelfAttention2D
from conv_self_attention import checks

PACKAGE = pathlib.Path(checks.__file__).parent


def test_numpy_and_python_bools_are_alike_and_stored_as_bool():
    for value in (True, np.bool_(True)):
        assert type(checks.boolean("flag", value)) is bool
    layer = SelfAttention2D(use_bias=np.bool_(True), use_scale=np.bool_(False))
    config = json.loads(json.dumps(layer.get_config()))
    assert (config["use_bias"], config["use_scale"]) == (True, False)
    monitor = AttentionMonitor(np.zeros((1, 4, 4, 8)), per_head=np.bool_(True))
    assert type(monitor.options["per_head"]) is bool


# (check, arguments, the argument's name, the value as received)
REFUSALS = [
    (checks.boolean, ("per_head", 1), "per_head", "1"),
    (checks.positive_int, ("filters", 0), "filters", "0"),
    (checks.positive_int, ("filters", np.bool_(True)), "filters", "np.True_"),
    (checks.non_negative_int, ("seed", -1), "seed", "-1"),
    (checks.finite_float, ("gamma", float("inf")), "gamma", "inf"),
    (checks.one_of, ("mode", "x", ("a", "b")), "mode", "'x'"),
    (checks.int_tuple, ("spatial_shape", ()), "spatial_shape", "()"),
    (checks.head_multiple, ("key_channels", 6, 4), "key_channels", "6"),
    (checks.pool_size, ((2,), 2), "pool_size", "(2,)"),
]


@pytest.mark.parametrize(
    "check, arguments, name, received", REFUSALS,
    ids=[f"{row[0].__name__}-{row[2]}" for row in REFUSALS],
)
def test_refusals_name_the_rule_then_what_was_received(
    check, arguments, name, received
):
    with pytest.raises(ValueError) as raised:
        check(*arguments)
    message = str(raised.value)
    assert type(raised.value) is ValueError
    assert message.index(f"`{name}`") < message.index("Expected")
    assert message.endswith(f"Received: {name}={received}"), message


def _message_text(call):
    """The literal parts of an exception's message, and whether it
    interpolates a caught exception (whose own text says what was
    received)."""
    parts = [node.value for node in ast.walk(call)
             if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    wraps = any(isinstance(node, ast.Name) and node.id == "error"
                for node in ast.walk(call))
    return "".join(parts), wraps


@pytest.mark.once
def test_every_refusal_in_the_package_says_what_it_received():
    """Checks written beside their function (shapes, models, files) keep
    the same form as `checks`' own: the rule, then `Received:`."""
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            call = getattr(node, "exc", None) if isinstance(
                node, ast.Raise) else None
            if not (isinstance(call, ast.Call) and getattr(
                    call.func, "id", None) in ("ValueError", "TypeError")):
                continue
            text, wraps = _message_text(call)
            if text and not wraps and "Received" not in text:
                missing.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not missing, missing
