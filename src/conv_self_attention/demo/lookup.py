"""The lookup task's four arms, their training, and the ablation.

Every arm has the same stem (two 3x3 convolutions), a block, and a 1x1
head, and the same training: the block is what differs.

- `plain`: a third 3x3 convolution, as wide as the stem (more parameters
  than the attention arm; receptive field 7x7: the keys are out of reach).
- `dilated`: the fair convolutional answer: the stem's second
  convolution and the block replaced by 3x3 convolutions dilated 2, 4
  and 8, narrower so that the parameters match the attention arm's; its
  receptive field (31x31) covers the whole map.
- `global_context`: a global-context block (global average pool, two 1x1
  convolutions, added back to every position; GCNet / squeeze-excite
  style): long range, but one vector for every position.
- `attention`: `SelfAttention2D`.
"""

import dataclasses

import keras
import numpy as np
from keras import layers
from keras import ops

from conv_self_attention import SelfAttention2D
from conv_self_attention.demo import lookup_data
from conv_self_attention.diagnostics import attention_ablation

ARMS = ("plain", "dilated", "global_context", "attention")
DESCRIPTIONS = {
    "plain": "plain convolutions (3 x 3x3)",
    "dilated": "dilated convolutions (receptive field 31x31)",
    "global_context": "global-context block",
    "attention": "SelfAttention2D",
}
WIDTH = 16
DILATED_WIDTH = 10
CLASSES = 1 + lookup_data.SHAPES
# Divides the held-out count: one compiled prediction step, not two.
PREDICT_BATCH = 250


@dataclasses.dataclass
class Budget:
    """Training budget and hyperparameters, the same for every arm."""

    train_examples: int = 4096
    held_out_examples: int = 1000
    epochs: int = 15
    batch_size: int = 64
    learning_rate: float = 5e-3


def build_arm(arm, query_key_init=None):
    """The functional model of `arm` (one of `ARMS`).

    Args:
        arm: which block the model has.
        query_key_init: passed to `SelfAttention2D` (the attention arm
            only); `None` for the layer's default.
    """
    if arm not in ARMS:
        raise ValueError(
            f"`arm` must be one of {ARMS}. Received: arm={arm!r}")
    size = lookup_data.SIZE
    inputs = keras.Input((size, size, 3))
    x = _conv(WIDTH if arm != "dilated" else DILATED_WIDTH, "stem_1")(inputs)
    if arm == "dilated":
        for rate in (2, 4, 8):
            x = _conv(DILATED_WIDTH, f"dilated_{rate}", rate)(x)
    else:
        x = _conv(WIDTH, "stem_2")(x)
    if arm == "plain":
        x = _conv(WIDTH, "block")(x)
    elif arm == "global_context":
        context = layers.GlobalAveragePooling2D(keepdims=True)(x)
        context = layers.Conv2D(WIDTH // 2, 1, activation="relu")(context)
        context = layers.Conv2D(WIDTH, 1, name="block")(context)
        x = layers.Add()([x, context])  # Broadcast to every position.
    elif arm == "attention":
        options = {} if query_key_init is None else {
            "query_key_init": query_key_init}
        # Keys and values max-pooled 2x2 (as BigGAN does): 64 keys for
        # 256 queries, a quarter of the cost.
        x = SelfAttention2D(pool_size=2, key_channels=8, name="attention",
                            **options)(x)
    outputs = layers.Conv2D(CLASSES, 1, activation="softmax",
                            name="head")(x)
    return keras.Model(inputs, outputs, name=f"lookup_{arm}")


def _conv(width, name, rate=1):
    return layers.Conv2D(width, 3, padding="same", dilation_rate=rate,
                         activation="relu", name=name)


def pixel_loss(targets, probabilities):
    """Sparse categorical cross-entropy of every pixel, `(B, H, W)`.

    Computed on the pixels as rows: on the torch backend (Keras 3.15, torch
    2.14), `sparse_categorical_crossentropy` on maps fails in the backward
    pass on a CPU ("grad_input must be contiguous"), with or without the
    attention layer; on rows it trains.
    """
    losses = keras.losses.sparse_categorical_crossentropy(
        ops.reshape(targets, (-1,)),
        ops.reshape(probabilities, (-1, CLASSES)))
    return ops.reshape(losses, ops.shape(targets))


def blob_accuracy(targets, probabilities, blobs):
    """Share of blob pixels whose most likely class is their target."""
    predicted = np.argmax(np.asarray(probabilities), axis=-1)
    return float(np.mean(predicted[blobs] == np.asarray(targets)[blobs]))


def train_arm(arm, seed, budget, query_key_init=None, verbose=0):
    """Trains `arm` on the seed's data; returns a result dict.

    The data (`make_lookup` with `seed` for training, `seed + 10**6`
    held out) and the initial weights (`keras.utils.set_random_seed`)
    depend on `seed` only. The metric is the held-out blob-pixel accuracy
    (chance about 1/3); for the attention arm, `attention_ablation` on the
    held-out maps gives the accuracy with the layer removed.
    """
    train = lookup_data.make_lookup(budget.train_examples, seed)
    held_out = lookup_data.make_lookup(budget.held_out_examples,
                                       seed + 10**6)
    keras.utils.set_random_seed(seed)
    model = build_arm(arm, query_key_init)
    steps = budget.epochs * -(-budget.train_examples // budget.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(
        budget.learning_rate, steps)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=pixel_loss)
    model.fit(train.x, train.y, sample_weight=train.weights,
              batch_size=budget.batch_size, epochs=budget.epochs,
              verbose=verbose)
    probabilities = model.predict(held_out.x, batch_size=PREDICT_BATCH,
                                  verbose=0)
    result = {
        "model": model, "seed": seed,
        "accuracy": blob_accuracy(held_out.y, probabilities, held_out.blobs),
        "parameters": model.count_params(),
    }
    if arm == "attention":
        result["ablation"] = attention_ablation(
            model, held_out.x, held_out.y, batch_size=PREDICT_BATCH,
            metric={"accuracy": lambda y, p: blob_accuracy(
                y, p, held_out.blobs)})["attention"]
    return result
