"""Fréchet distance between two sets of feature vectors (NumPy only).

The distance between Gaussians fitted to each set, as in FID:
`|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`. Here the features
are the demo's own classifier's, not Inception's, so the numbers compare
runs of this demo only.
"""

import keras
import numpy as np

from conv_self_attention.demo.networks import FEATURES_LAYER


def frechet_distance(features_a, features_b):
    """Returns the Fréchet distance between two `(n, d)` feature sets."""
    features_a = np.asarray(features_a, dtype="float64")
    features_b = np.asarray(features_b, dtype="float64")
    if features_a.ndim != 2 or features_a.shape[1:] != features_b.shape[1:]:
        raise ValueError(
            "Both feature sets must be 2D with the same number of columns. "
            f"Received: shapes {features_a.shape} and {features_b.shape}"
        )
    mean_a, mean_b = features_a.mean(axis=0), features_b.mean(axis=0)
    cov_a = np.cov(features_a, rowvar=False)
    cov_b = np.cov(features_b, rowvar=False)
    distance = (
        np.sum((mean_a - mean_b) ** 2)
        + np.trace(cov_a)
        + np.trace(cov_b)
        - 2.0 * _trace_sqrt_product(cov_a, cov_b)
    )
    return float(max(distance, 0.0))


def _trace_sqrt_product(cov_a, cov_b):
    """`Tr((A B)^(1/2))` for covariance matrices A, B.

    Uses `Tr((A B)^(1/2)) = Tr((A^(1/2) B A^(1/2))^(1/2))`: the right side is
    symmetric, so symmetric eigendecompositions suffice and no complex
    round-off appears, unlike a general matrix square root.
    """
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2.0)
    return float(np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None))))


def _psd_sqrt(matrix):
    eigenvalues, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ vectors.T


def feature_extractor(classifier):
    """The classifier cut at its penultimate (`"features"`) layer."""
    return keras.Model(
        classifier.inputs,
        classifier.get_layer(FEATURES_LAYER).output,
        name="features",
    )
