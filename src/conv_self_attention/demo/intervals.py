"""Means, spreads and differences over seeds, with Student's t intervals.

Every comparison the demo reports is a mean and spread (sample standard
deviation) over the seeds it ran with, next to the difference of the means,
its standard error and its 95% Student's t interval, so that a difference
can be told from seed noise.
"""

import math

import numpy as np
import scipy.stats


def spread(values):
    """`{"mean", "std", "values"}`; `std` (ddof=1) is `None` for one value."""
    values = [float(value) for value in values]
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return {"mean": float(np.mean(values)), "std": std, "values": values}


def mean_std(value, digits):
    if value["std"] is None:
        return f"{value['mean']:.{digits}f}"
    return f"{value['mean']:.{digits}f} ± {value['std']:.{digits}f}"


def difference_interval(value, baseline):
    """`(delta, standard error, half-width of the 95% interval)` of the
    difference of two means over seeds, or `None` for the last two when a
    side has one seed.

    The interval is Student's t with `min(n1, n2) - 1` degrees of freedom
    (the conservative choice for unequal variances): with 3 seeds a side,
    4.30 standard errors, not 2.
    """
    delta = value["mean"] - baseline["mean"]
    if value["std"] is None or baseline["std"] is None:
        return delta, None, None
    counts = len(value["values"]), len(baseline["values"])
    error = math.sqrt(value["std"] ** 2 / counts[0]
                      + baseline["std"] ** 2 / counts[1])
    quantile = scipy.stats.t.ppf(0.975, min(counts) - 1)
    return delta, error, float(quantile * error)


def difference(value, baseline, digits):
    """Difference of means with its s.e. and 95% interval (if both have
    spread)."""
    delta, error, half_width = difference_interval(value, baseline)
    if error is None:
        return f"{delta:+.{digits}f}"
    return (f"{delta:+.{digits}f} (s.e. {error:.{digits}f}; 95%: "
            f"{delta - half_width:+.{digits}f} to "
            f"{delta + half_width:+.{digits}f})")
