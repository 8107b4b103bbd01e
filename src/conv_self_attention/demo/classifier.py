"""Digit classifiers with and without the layer: same seed, same budget."""

import keras

from conv_self_attention.demo.networks import ATTENTION_PLACES
from conv_self_attention.demo.networks import build_classifier
from conv_self_attention.diagnostics import AttentionMonitor
from conv_self_attention.diagnostics import attention_ablation

# Held-out images on which the attention statistics are measured.
MONITOR_EXAMPLES = 64
DESCRIPTIONS = {
    "none": "no attention",
    "first": "attention first (filters=8)",
    "intermediate": "attention intermediate",
}


def train_classifier(attention, dataset, epochs, seed=0, batch_size=32,
                     query_key_init=None):
    """Trains one classifier; returns `(model, history_dict, accuracy,
    monitor)`.

    The held-out set is the validation data, used to draw accuracy curves
    and for the final test accuracy (the last epoch's, which is the final
    model's); nothing is selected on it. With attention, its statistics on
    the first `MONITOR_EXAMPLES` held-out images are measured before
    training and logged every epoch (`attention/attention/<statistic>`)
    by the returned `AttentionMonitor` (`None` without attention).
    `query_key_init` is the layer's (`None`: its default).
    """
    keras.utils.set_random_seed(seed)
    model = build_classifier(attention, resolution=dataset.resolution,
                             query_key_init=query_key_init)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    monitor = None
    if attention != "none":
        monitor = AttentionMonitor(dataset.x_test[:MONITOR_EXAMPLES])
    history = model.fit(
        dataset.x_train,
        dataset.y_train,
        batch_size=batch_size,
        epochs=epochs,
        validation_data=(dataset.x_test, dataset.y_test),
        callbacks=[monitor] if monitor else [],
        verbose=2,
    )
    accuracy = history.history["val_accuracy"][-1]
    return model, history.history, float(accuracy), monitor


def train_all(dataset, epochs, seeds=(0,), query_key_init=None):
    """Trains the three variants once per seed.

    Returns:
        `{place: [result dict per seed]}`, each with `model`, `history`,
        `test_accuracy`, `monitor`, `seed`, and `ablation` (the layer's
        `attention_ablation` on the held-out digits; `None` without
        attention).
    """
    results = {place: [] for place in ATTENTION_PLACES}
    for seed in seeds:
        for number, place in enumerate(ATTENTION_PLACES, start=1):
            print(
                f"\nClassifier {number}/{len(ATTENTION_PLACES)}, seed "
                f"{seed}: {DESCRIPTIONS[place]}"
            )
            model, history, accuracy, monitor = train_classifier(
                place, dataset, epochs, seed, query_key_init=query_key_init
            )
            results[place].append({
                "ablation": None if monitor is None else attention_ablation(
                    model, dataset.x_test, dataset.y_test)["attention"],
                "model": model,
                "history": history,
                "test_accuracy": accuracy,
                "monitor": monitor,
                "seed": seed,
            })
    return results
