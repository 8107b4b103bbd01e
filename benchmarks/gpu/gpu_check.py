"""What the GPU benchmark checks in every case it times.

Two things, each of which makes the case print FAIL:

- the kernel: the `KernelCall(implementation, chunk_size)` that the layer
  reports having run (`layer.last_kernel`) must be the one expected: the
  case's own implementation, or for `auto` the package's pure rule
  evaluated on the device the benchmark found by itself; a chunked block
  must be the planner's size for the real batch;
- the output: its relative error against a float32 reference of the same
  case (same weights and input, computed in float64 with NumPy on a seeded
  sample of query positions: the full N x M would not fit) must be within
  the case's tolerance.

The error is measured relative to the attention term `y_ref - x` (`gamma`
times the attended values), not to the whole output `y = x + gamma * o`:
a kernel returning zeros is then off by exactly 1 whatever the residual.
"""

import numpy as np

# Query positions per image the reference is computed on.
SAMPLED_QUERIES = 256
# Relative error of the attention term allowed per case, against the
# float32 reference. float32: summation order only (7e-7 measured on CPU).
# TF32-like float32 matmuls (JAX's default on Ampere and later GPUs,
# TensorFlow's TF32, the cuDNN convolutions of torch's naive block) and
# float16 round matmul inputs to 11 significant bits, bfloat16 to 8, and
# the softmax amplifies the rounding of the logits. Measured on CPU at
# this benchmark's shapes (unit-variance input): float16 1.5e-3-6.4e-3,
# bfloat16 1.3e-2-5.8e-2 (the naive block, whose logits and softmax are in
# bfloat16, at the top). Each tolerance is 3-8 times that; a wrong kernel
# is off by about 1.
TOLERANCES = {
    "float32": 1e-3,
    "tf32": 0.05,
    "mixed_float16": 0.05,
    "mixed_bfloat16": 0.2,
}


def sample_queries(num_queries, count=SAMPLED_QUERIES, seed=0):
    """Sorted distinct query positions (all of them when there are fewer
    than `count`): the diagnostics' seeded query sample."""
    from conv_self_attention.diagnostics import sample_query_indices

    return sample_query_indices(num_queries, count, seed)


def _array(variable):
    import keras

    return np.asarray(keras.ops.convert_to_numpy(variable.value), "float64")


def attention_weights(layer):
    """The benchmark layer's weights as float64 `(in, out)` matrices:
    `query`, `key`, `value`, `output` and the scalar `gamma`. Works for
    `SelfAttention2D` and the naive block as the benchmark builds them
    (one head, no bias, pooling, scale, spectral norm or activation)."""
    from conv_self_attention import SelfAttention2D

    if isinstance(layer, SelfAttention2D):
        if (layer.num_heads, layer.pool_size, layer.use_scale,
                layer.use_bias, layer.spectral_norm) != (
                    1, None, False, False, False):
            raise ValueError("The reference covers the benchmark's layer "
                             "configuration only.")
        parts = {name: layer_part.kernel for name, layer_part in (
            ("query", layer.query_projection),
            ("key", layer.key_projection),
            ("value", layer.value_projection),
            ("output", layer.output_projection),
        )}
    else:
        parts = {"query": layer.query_conv.kernel,
                 "key": layer.key_conv.kernel,
                 "value": layer.value_conv.kernel,
                 "output": layer.output_conv.kernel}
    weights = {}
    for name, kernel in parts.items():
        matrix = _array(kernel)
        weights[name] = matrix.reshape(matrix.shape[-2], matrix.shape[-1])
    weights["gamma"] = float(_array(layer.gamma))
    return weights


def reference_rows(weights, inputs, queries):
    """`y = x + gamma * Wo softmax(q k^T) v` at the positions `queries`
    of every image, float64. `inputs` `(B, H, W, C)`; returns
    `(B, len(queries), C)`."""
    flat = np.asarray(inputs, "float64").reshape(inputs.shape[0], -1,
                                                 inputs.shape[-1])
    rows = []
    for image in flat:
        query = image[queries] @ weights["query"]
        key = image @ weights["key"]
        value = image @ weights["value"]
        logits = query @ key.T
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        attended = (probs @ value) @ weights["output"]
        rows.append(image[queries] + weights["gamma"] * attended)
    return np.stack(rows)


def attention_error(output_rows, reference, input_rows):
    """Largest error of the output, relative to the largest attention term
    `reference - input_rows` (module docstring)."""
    output_rows = np.asarray(output_rows, "float64")
    scale = np.abs(reference - input_rows).max()
    return float(np.abs(output_rows - reference).max() / scale)


def uses_tf32(device, case):
    """Whether float32 matmuls of `case` round to TF32-like precision on
    `device` (the benchmark's `device_info`)."""
    if not device.get("gpu"):
        return False
    if device.get("float32_matmul") in ("TF32", "default"):
        return True
    # torch's naive block runs its 1x1 convolutions through cuDNN.
    return case == "naive" and device.get("float32_cudnn") == "TF32"


def tolerance(policy, device, case):
    """Allowed relative error of the attention term (`TOLERANCES`)."""
    if policy == "float32":
        return TOLERANCES["tf32" if uses_tf32(device, case) else "float32"]
    return TOLERANCES[policy]


def expected_kernel(case, backend, device, shape, policy):
    """The kernel the layer must report for this case, as `kernel_fields`
    (None for the naive block, which has no kernel).

    The package's pure planner (`kernels.plan_kernel`, which the layer's
    dispatcher calls too) given this checker's own facts: the device as
    the preflight measured it (not as the package finds it), and the
    case's shape with the layer's default widths, one head, the real batch
    (a block planned for another batch, e.g. unknown at trace time, shows
    as a FAIL)."""
    import keras

    from conv_self_attention import kernels
    from conv_self_attention.kernels.device import Device
    from conv_self_attention.kernels.device import parse_capability

    if case == "naive":
        return None
    size, batch, channels = shape
    gpu = bool(device.get("gpu"))
    planned = kernels.plan_kernel(
        backend=backend,
        device=Device(
            "gpu" if gpu else "cpu",
            parse_capability(device.get("compute_capability")) if gpu
            else None,
        ),
        dtype=keras.DTypePolicy(policy).compute_dtype,
        num_queries=size * size,
        num_keys=size * size,
        batch=batch,
        heads=1,
        key_width=channels // 8,
        value_width=channels // 2,
        implementation=case,
    )
    return {
        "implementation": planned.implementation,
        "chunk_size": planned.chunk_size,
    }


def kernel_fields(call):
    """The `implementation` and `chunk_size` of a `KernelCall` (or None)
    as JSON."""
    if call is None:
        return None
    return {"implementation": call.implementation,
            "chunk_size": call.chunk_size}


def verdict(kernel, expected, error, limit):
    """PASS, or FAIL with every reason: a kernel other than `expected`
    (both `kernel_fields` or None), an error above `limit` or not finite.
    Returns `{"verdict", "problems"}`."""
    problems = []
    if kernel != expected:
        problems.append(
            f"ran {kernel_name(kernel)}, expected {kernel_name(expected)}"
        )
    if error is None:
        problems.append("no output error")
    elif not error <= limit:  # NaN fails too
        problems.append(f"error {error:.3g} > tolerance {limit:.3g}")
    return {"verdict": "FAIL" if problems else "PASS", "problems": problems}


def kernel_name(fields):
    """`chunked[1024]`, `fused`, or "" for no kernel (`kernel_fields`)."""
    if fields is None:
        return ""
    if fields["chunk_size"] is None:
        return fields["implementation"]
    return f"{fields['implementation']}[{fields['chunk_size']}]"


def forward(layer, inputs, backend):
    """The layer's inference output on `inputs`, as float32 NumPy."""
    import keras

    tensor = keras.ops.convert_to_tensor(inputs)
    if backend == "torch":
        import torch

        with torch.no_grad():
            output = layer(tensor)
    else:
        output = layer(tensor)
    return np.asarray(keras.ops.convert_to_numpy(
        keras.ops.cast(output, "float32")))


def check_case(layer, inputs, kernel, case, backend, device, shape, policy):
    """The check fields of one timed case: the kernel it ran (`kernel`,
    read from the layer after the timed steps), the one expected, the
    output's error and tolerance, and the verdict."""
    kernel = kernel_fields(kernel)
    expected = expected_kernel(case, backend, device, shape, policy)
    queries = sample_queries(shape[0] * shape[0])
    flat_inputs = inputs.reshape(inputs.shape[0], -1, inputs.shape[-1])
    output = forward(layer, inputs, backend)
    output = output.reshape(flat_inputs.shape)[:, queries]
    reference = reference_rows(attention_weights(layer), inputs, queries)
    error = attention_error(output, reference, flat_inputs[:, queries])
    limit = tolerance(policy, device, case)
    return {
        "kernel": kernel,
        "expected_kernel": expected,
        "relative_error": error,
        "tolerance": limit,
        **verdict(kernel, expected, error, limit),
    }
