"""Gaussian copula helpers for correlated binary labels (used by ``findings.py``, datasets.md §7.5).

Binary labels are drawn as ``Z > threshold`` with ``Z`` multivariate normal. A target Pearson (phi) correlation of
two labels fixes the latent correlation of their Gaussians; :func:`latent_for_binary_correlation` inverts that
relation numerically (no scipy needed) and :func:`nearest_positive_definite` repairs a matrix assembled pair by pair.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

STANDARD_NORMAL = NormalDist()
_GAUSS_X, _GAUSS_W = np.polynomial.legendre.leggauss(96)


def _both_above(a: float, b: float, rho: float) -> float:
    """P(Z1 > a, Z2 > b) for standard bivariate normal with correlation rho (Gauss-Legendre over Z1)."""
    lo, hi = a, max(a, 0.0) + 9.0
    x = 0.5 * (hi - lo) * _GAUSS_X + 0.5 * (hi + lo)
    tail = np.array([1.0 - STANDARD_NORMAL.cdf((b - rho * xi) / np.sqrt(1.0 - rho * rho)) for xi in x])
    density = np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)
    return float(0.5 * (hi - lo) * np.sum(_GAUSS_W * density * tail))


def binary_correlation(p1: float, p2: float, rho: float) -> float:
    """Pearson (phi) correlation of two copula labels with prevalences p1, p2 and latent correlation rho."""
    a, b = STANDARD_NORMAL.inv_cdf(1.0 - p1), STANDARD_NORMAL.inv_cdf(1.0 - p2)
    p11 = _both_above(a, b, rho)
    return float((p11 - p1 * p2) / np.sqrt(p1 * (1 - p1) * p2 * (1 - p2)))


def latent_for_binary_correlation(p1: float, p2: float, target: float) -> float:
    """The latent correlation whose thresholded labels have phi correlation ``target`` (bisection; phi rises in rho)."""
    lo, hi = 0.0, 0.995
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if binary_correlation(p1, p2, mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def nearest_positive_definite(matrix: np.ndarray, min_eigenvalue: float = 1e-3) -> np.ndarray:
    """Clip eigenvalues from below and rescale to unit diagonal: a correlation matrix close to ``matrix``."""
    values, vectors = np.linalg.eigh(matrix)
    if values.min() >= min_eigenvalue:
        return matrix
    fixed = (vectors * np.maximum(values, min_eigenvalue)) @ vectors.T
    scale = 1.0 / np.sqrt(np.diag(fixed))
    fixed = fixed * scale[:, None] * scale[None, :]
    np.fill_diagonal(fixed, 1.0)
    return fixed
