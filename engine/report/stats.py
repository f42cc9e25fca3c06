"""Array statistics for the report: seeded Poisson bootstrap weights, interval and test summaries,
Benjamini-Hochberg, the unbiased pass@k estimator. Pure numpy, no I/O.

The bootstrap uses Poisson(1) weights rather than multinomial draws: weights for one unit (a question, a
persona) are then independent of how many units a group has, so one weight matrix per benchmark and one per
persona block serve every model, condition and subgroup at once, and the resampling stays paired across them.
"""

from __future__ import annotations

import functools
import math
import zlib

import numpy as np

LEVEL = 0.95


def stream_seed(seed: int, *names: str | int) -> list[int]:
    """A SeedSequence entropy list: stable across processes and Python versions (no hash randomisation)."""
    return [seed, *(n if isinstance(n, int) else zlib.crc32(n.encode()) for n in names)]


def poisson_weights(seed: int, stream: tuple[str | int, ...], resamples: int, units: int) -> np.ndarray:
    """resamples × units Poisson(1) weights as uint8: a quarter of float32's memory, exact (P(w ≥ 256) ≈ 0)."""
    rng = np.random.default_rng(stream_seed(seed, *stream))
    return rng.poisson(1.0, size=(resamples, units)).astype(np.uint8)


def ratio_draws(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Resampled ratios; a resample that drew no unit of a group has no estimate (NaN), not a zero."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def interval(draws: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval per column of a resamples × groups matrix, ignoring empty resamples (NaN); a column
    with none left (no resample reached the group) is NaN.

    `np.nanquantile(draws, [α, 1 − α], axis=0)` with its default linear method (Hyndman & Fan 1996, type 7),
    equal to it bit for bit (tests/engine/report/test_report_stats.py), computed for every column at once: one
    sort instead of numpy's per-column `apply_along_axis` (1,000 resamples: 14 columns 0.3 ms instead of 1 ms,
    2,000 columns 0.09 s instead of 0.27 s). Same steps as numpy's `_quantile`
    (numpy/lib/_function_base_impl.py): virtual index (n − 1)·q over the n non-NaN draws, its floor and the
    next index (both the last draw from n − 1 on), and `_lerp`'s two-sided interpolation."""
    alpha = (1.0 - level) / 2.0
    ordered = np.sort(draws, axis=0)  # NaN sorts last
    n = ordered.shape[0] - np.isnan(ordered).sum(axis=0)  # usable draws per column
    virtual = (n - 1) * np.array([[alpha], [1.0 - alpha]])  # 2 × columns
    below = np.floor(virtual).astype(np.intp)
    last = np.maximum(n - 1, 0)
    a = np.take_along_axis(ordered, np.minimum(below, last), axis=0)
    b = np.take_along_axis(ordered, np.minimum(below + 1, last), axis=0)
    t = virtual - below
    with np.errstate(invalid="ignore"):
        diff = b - a
        bounds = np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)
    bounds[:, n == 0] = np.nan
    return bounds[0], bounds[1]


def p_value(estimate: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Two-sided bootstrap p-value for estimate ≠ 0 (Hall & Wilson: the draws recentred on the estimate
    stand in for the null distribution); (1 + hits) / (1 + draws) so it is never exactly 0."""
    valid = ~np.isnan(draws)
    hits = (np.abs(draws - estimate) >= np.abs(estimate) - 1e-12) & valid
    with np.errstate(invalid="ignore", divide="ignore"):
        p = (1.0 + hits.sum(axis=0)) / (1.0 + valid.sum(axis=0))
    return np.where(np.isnan(estimate), np.nan, np.minimum(p, 1.0))


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """BH-adjusted p-values (q-values); NaN entries are not tests and stay NaN."""
    p = np.asarray(p, dtype=float)
    q = np.full_like(p, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    if tested.size == 0:
        return q
    order = tested[np.argsort(p[tested], kind="stable")]
    m = order.size
    scaled = p[order] * m / np.arange(1, m + 1)
    q[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return q


def pass_at_k(n: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
    """Unbiased pass@k (Chen et al. 2021) per cell from n samples with c passes: 1 − C(n−c, k) / C(n, k),
    as a running product so large n never overflows; NaN where a cell has fewer than k samples."""
    n = np.asarray(n, dtype=float)
    fail = n - np.asarray(c, dtype=float)
    none_pass = np.ones_like(n)
    for j in range(k):
        with np.errstate(invalid="ignore", divide="ignore"):
            none_pass *= np.clip((fail - j) / (n - j), 0.0, 1.0)
    return np.where(n >= k, 1.0 - none_pass, np.nan)



def _t_tail(t: float, df: int) -> float:
    """P(|T| ≥ |t|), Student's t with integer df ≥ 1: the closed-form finite series of Abramowitz & Stegun
    26.7.3 (odd df) and 26.7.4 (even df), in scalar `math` so the result is bit-identical run to run (numpy's
    SIMD transcendentals may differ in the last bit with array alignment)."""
    theta = math.atan(abs(t) / math.sqrt(df))
    c2, term, series = math.cos(theta) ** 2, 1.0, 1.0
    if df % 2:  # Σ a_k cos^2k θ for k ≤ (df−3)/2, a_k = a_{k−1}·2k/(2k+1)
        for k in range(1, (df - 3) // 2 + 1):
            term *= c2 * 2 * k / (2 * k + 1)
            series += term
        inside = 2 / math.pi * (theta + (math.sin(theta) * math.cos(theta) * series if df > 1 else 0.0))
    else:  # Σ b_k cos^2k θ for k ≤ (df−2)/2, b_k = b_{k−1}(2k−1)/(2k)
        for k in range(1, (df - 2) // 2 + 1):
            term *= c2 * (2 * k - 1) / (2 * k)
            series += term
        inside = math.sin(theta) * series
    return min(max(1.0 - inside, 0.0), 1.0)


def t_two_sided_p(t: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Two-sided p-value P(|T| ≥ |t|) per element for Student's t with integer df; NaN where df < 1 or t is
    NaN. E.g. t = 2, df = 3 → 0.13933."""
    t, df = np.broadcast_arrays(np.asarray(t, dtype=float), np.asarray(df, dtype=float))
    out = [_t_tail(x, int(f)) if f >= 1 and not math.isnan(x) else math.nan for x, f in zip(t.ravel().tolist(), df.ravel().tolist())]
    return np.array(out, dtype=float).reshape(t.shape)


@functools.lru_cache(maxsize=1024)
def _t_critical(df: int, level: float) -> float:
    lo, hi = 0.0, 1e4
    for _ in range(100):  # bisection: the tail is monotone in t
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_tail(mid, df) > 1.0 - level else (lo, mid)
    return (lo + hi) / 2


def t_critical(df: np.ndarray, level: float = LEVEL) -> np.ndarray:
    """The two-sided critical value t with P(|T| ≥ t) = 1 − level, per integer df ≥ 1; NaN where df < 1.
    E.g. df 1 → 12.706, df 4 → 2.776, df 29 → 2.045."""
    df = np.asarray(df, dtype=float)
    out = [_t_critical(int(f), level) if f >= 1 else math.nan for f in df.ravel().tolist()]
    return np.array(out, dtype=float).reshape(df.shape)
