"""How the self-attention layers initialize their projections.

Every projection gets its own copy of the configured initializer: Keras
initializers are stateless, so one instance (seeded, or unseeded, which
draws its seed once when created) returns the same values for the same
shape on every call, and would make the query, key and value kernels
equal by accident. A seeded initializer's copies get seeds derived from
its seed and the projection, so the same layer built twice gets the same
kernels, and no two projections share them.

The query-key relation at initialization is an explicit choice,
`query_key_init`:

- `"independent"`: each kernel drawn on its own.
- `"mimetic"`: the key kernel starts as a copy of the query kernel, so the
  logits start as `x_i^T W W^T x_j`: a similarity prior (a position first
  attends to positions with similar features), the query-key half of
  mimetic initialization (Trockman & Kolter, 2023).
"""

from keras import ops

QUERY_KEY_INITS = ("independent", "mimetic")
# The order of the projections; a seeded initializer's copy for the
# projection at index `i` gets a seed derived from the user's and `i`.
PROJECTIONS = ("query_projection", "key_projection", "value_projection",
               "output_projection", "shortcut_projection")
# Mixes the user's seed with the projection's index so that layers seeded
# 0, 1, 2, ... do not share kernels between projections either.
_SEED_STRIDE = 1_000_003
_SEED_LIMIT = 2**31 - 1


def projection_initializer(initializer, name):
    """A new copy of `initializer` for the projection called `name`.

    An integer seed is replaced by one derived from it and the projection;
    an unseeded initializer's copy draws its own seed from Python's
    `random` (which `keras.utils.set_random_seed` seeds), so the same
    global seed gives the same weights.
    """
    config = initializer.get_config()
    seed = config.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        index = PROJECTIONS.index(name)
        config["seed"] = (seed * _SEED_STRIDE + index) % _SEED_LIMIT
    return initializer.__class__.from_config(config)


def apply_query_key_init(layer):
    """Sets the key kernel from the query kernel for `"mimetic"`."""
    if layer.query_key_init == "mimetic":
        # A copy: on JAX, two variables holding one buffer break `fit`,
        # which donates every variable's buffer to the training step.
        layer.key_projection.kernel.assign(
            ops.copy(layer.query_projection.kernel.value))
