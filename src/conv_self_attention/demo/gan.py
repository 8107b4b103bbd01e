"""Backend-neutral GAN training: two compiled models, trained alternately.

Gradients have no backend-neutral API in Keras, but `train_on_batch` does.
So each step trains the discriminator alone on real and generated images,
then a combined model `D(G(z))` whose discriminator is frozen, as in the
original GAN recipe. `discriminator.trainable` is switched before each
call, and each model always sees the same switch setting, so the variables
each optimizer was built for never change. This runs unchanged on
TensorFlow, JAX and PyTorch.

SAGAN's recipe: hinge loss, spectral norm in both networks, and the
two-timescale update rule (TTUR) with Adam(beta_1=0, beta_2=0.9), learning
rates 1e-4 for G and 4e-4 for D (Zhang et al., 2018, section 5).
"""

import keras
import numpy as np
from keras import ops

from conv_self_attention.demo.networks import LATENT_DIM
from conv_self_attention.diagnostics import attention_statistics
from conv_self_attention.diagnostics import flat_statistics
from conv_self_attention.diagnostics import gamma_values

GENERATOR_LEARNING_RATE = 1e-4
DISCRIMINATOR_LEARNING_RATE = 4e-4


def discriminator_hinge_loss(y_true, y_pred):
    """Hinge loss per sample; `y_true` is +1 for real, -1 for generated.

    Batches hold as many real as generated images, so the batch mean times
    2 is SAGAN's `mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))`.
    """
    return 2.0 * ops.relu(1.0 - y_true * y_pred)


def generator_hinge_loss(y_true, y_pred):
    """SAGAN's generator loss `-mean(D(G(z)))`; `y_true` is ignored."""
    del y_true
    return -y_pred


class GANTrainer:
    """Trains a generator and a discriminator with the SAGAN recipe.

    Args:
        generator: model from `(batch, LATENT_DIM)` to images.
        discriminator: model from images to `(batch, 1)` scores.
        seed: seed of the latent vectors and the batch order.
    """

    def __init__(self, generator, discriminator, seed=0):
        self.generator = generator
        self.discriminator = discriminator
        self.rng = np.random.default_rng(seed)
        discriminator.compile(
            optimizer=_adam(DISCRIMINATOR_LEARNING_RATE),
            loss=discriminator_hinge_loss,
        )
        latent = keras.Input((LATENT_DIM,))
        self.combined = keras.Model(
            latent, discriminator(generator(latent)), name="combined"
        )
        self.combined.compile(
            optimizer=_adam(GENERATOR_LEARNING_RATE),
            loss=generator_hinge_loss,
        )

        # Compiled, G-in-training-mode forward pass for the D step.
        self.sampler = _TrainingModeSampler(generator, name="sampler")

    def latent(self, count):
        """Draws `count` standard normal latent vectors."""
        return self.rng.standard_normal((count, LATENT_DIM)).astype("float32")

    def train_step(self, real):
        """One D step then one G step; returns `(d_loss, g_loss)`."""
        batch_size = len(real)
        fake = self.sampler.predict_on_batch(self.latent(batch_size))
        labels = np.concatenate(
            [np.ones((batch_size, 1)), -np.ones((batch_size, 1))]
        ).astype("float32")
        self.discriminator.trainable = True
        d_loss = self.discriminator.train_on_batch(
            np.concatenate([real, fake]), labels
        )
        self.discriminator.trainable = False
        g_loss = self.combined.train_on_batch(
            self.latent(batch_size), np.ones((batch_size, 1), "float32")
        )
        return float(d_loss), float(g_loss)

    def fit(self, images, epochs, batch_size=64, steps_per_epoch=None,
            on_epoch_end=None, monitor=None):
        """Trains for `epochs` passes over `images` with Keras progress bars.

        Args:
            images: `(n, height, width, 1)` real images in [-1, 1].
            epochs: number of epochs.
            batch_size: real images per step (as many are generated).
            steps_per_epoch: optional cap on the steps of an epoch.
            on_epoch_end: optional `fn(epoch)` called after each epoch.
            monitor: optional `{"generator": latent vectors,
                "discriminator": images}`: the inputs on which each epoch
                records `attention_statistics` of both networks, as
                `AttentionMonitor` does in `fit`.

        Returns:
            A dict of lists: per-step `d_loss` and `g_loss`, and per epoch
            `epoch_d_loss`, `epoch_g_loss`, every attention layer's gamma
            (keys as in `diagnostics.gamma_values`, prefixed with
            `generator/` or `discriminator/`) and, with `monitor`, the
            statistics as `attention/generator/<layer>/<statistic>`.
        """
        steps = len(images) // batch_size
        if steps_per_epoch is not None:
            steps = min(steps, steps_per_epoch)
        history = {"d_loss": [], "g_loss": [], "epoch_d_loss": [],
                   "epoch_g_loss": []}
        for epoch in range(epochs):
            print(f"Epoch {epoch + 1}/{epochs}")
            d_losses, g_losses = self._train_epoch(images, steps, batch_size)
            history["d_loss"] += d_losses
            history["g_loss"] += g_losses
            history["epoch_d_loss"].append(float(np.mean(d_losses)))
            history["epoch_g_loss"].append(float(np.mean(g_losses)))
            values = self.gammas()
            if monitor is not None:
                values.update(self.statistics(monitor))
            for key, value in values.items():
                history.setdefault(key, []).append(value)
            if on_epoch_end is not None:
                on_epoch_end(epoch)
        return history

    def _train_epoch(self, images, steps, batch_size):
        """`steps` shuffled batches; returns the per-step D and G losses."""
        progbar = keras.utils.Progbar(steps)
        order = self.rng.permutation(len(images))
        d_losses, g_losses = [], []
        for step in range(steps):
            batch = order[step * batch_size : (step + 1) * batch_size]
            d_loss, g_loss = self.train_step(images[batch])
            d_losses.append(d_loss)
            g_losses.append(g_loss)
            progbar.update(step + 1, [("d_loss", d_loss), ("g_loss", g_loss)])
        return d_losses, g_losses

    def gammas(self):
        """Current gamma of each attention layer in G and D."""
        values = gamma_values(self.generator, prefix="gamma/generator/")
        values.update(
            gamma_values(self.discriminator, prefix="gamma/discriminator/")
        )
        return values

    def statistics(self, monitor):
        """Flat `attention_statistics` of G and D on `monitor`'s inputs."""
        values = {}
        for role, model in (("generator", self.generator),
                            ("discriminator", self.discriminator)):
            values.update(flat_statistics(
                attention_statistics(model, monitor[role]),
                prefix=f"attention/{role}/",
            ))
        return values

    def generate(self, count, batch_size=250):
        """`count` images from G in inference mode, as a NumPy array."""
        return self.generator.predict(
            self.latent(count), batch_size=batch_size, verbose=0
        )


class _TrainingModeSampler(keras.Model):
    """Runs the generator in training mode under `predict_on_batch`.

    `predict_on_batch` is compiled on every backend but passes
    `training=False`; the discriminator must learn from the images G makes
    in training mode (batch-norm batch statistics), which are the ones the
    generator step optimizes.
    """

    def __init__(self, generator, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator

    def call(self, latent, training=None):
        del training  # Always training mode; see the class docstring.
        return self.generator(latent, training=True)


def _adam(learning_rate):
    return keras.optimizers.Adam(learning_rate, beta_1=0.0, beta_2=0.9)
