"""Power-law fits on log-log axes: cost exponents, and where two measured curves cross."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PowerLaw:
    """y ≈ prefactor * x ** exponent, fitted by least squares on log y against log x."""

    exponent: float
    prefactor: float
    r2: float
    n_points: int
    x_min: float
    x_max: float

    def __call__(self, x: float) -> float:
        return self.prefactor * x**self.exponent

    def to_dict(self) -> dict:
        """Plain fields, for JSON."""
        return asdict(self)


def _positive_pairs(xs: Sequence[float], ys: Sequence[float]) -> list[tuple[float, float]]:
    if len(xs) != len(ys):
        raise ValueError(f"xs and ys differ in length: {len(xs)} vs {len(ys)}")
    return sorted((float(x), float(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0 and math.isfinite(y))


def fit_power_law(xs: Sequence[float], ys: Sequence[float]) -> PowerLaw | None:
    """Least-squares line through (log x, log y) over the positive points; None with fewer than two distinct x."""
    pts = _positive_pairs(xs, ys)
    if len({x for x, _ in pts}) < 2:
        return None
    lx = [math.log(x) for x, _ in pts]
    ly = [math.log(y) for _, y in pts]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    sxx = sum((a - mx) ** 2 for a in lx)
    sxy = sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True))
    slope = sxy / sxx
    intercept = my - slope * mx
    ss_res = sum((b - (intercept + slope * a)) ** 2 for a, b in zip(lx, ly, strict=True))
    ss_tot = sum((b - my) ** 2 for b in ly)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 1e-12 * len(ly) else 1.0  # a flat series is fitted exactly
    return PowerLaw(slope, math.exp(intercept), r2, len(pts), pts[0][0], pts[-1][0])


@dataclass(frozen=True)
class Crossover:
    """Where `challenger` becomes cheaper than `reference`: a length inside the measured range, or none there."""

    length: float | None
    status: str
    extrapolated: float | None = None

    def to_dict(self) -> dict:
        """Plain fields, for JSON."""
        return asdict(self)


def crossover(
    xs_ref: Sequence[float], ys_ref: Sequence[float], xs_ch: Sequence[float], ys_ch: Sequence[float]
) -> Crossover:
    """The first length at which the challenger's cost drops below the reference's, interpolated linearly in
    log-log between the lengths both measured; when they do not cross there, the fitted power laws' intersection
    is given as `extrapolated` (if it lies beyond the range in the direction the gap is closing)."""
    ref, ch = dict(_positive_pairs(xs_ref, ys_ref)), dict(_positive_pairs(xs_ch, ys_ch))
    common = sorted(set(ref) & set(ch))
    if not common:
        return Crossover(None, "none in range: no length measured for both")
    gaps = [math.log(ch[x]) - math.log(ref[x]) for x in common]  # < 0: the challenger is cheaper
    if gaps[0] < 0:
        return Crossover(None, f"none in range: already cheaper at the shortest common length {common[0]:g}")
    for i in range(1, len(common)):
        if gaps[i] < 0:
            lx0, lx1 = math.log(common[i - 1]), math.log(common[i])
            frac = gaps[i - 1] / (gaps[i - 1] - gaps[i])
            return Crossover(math.exp(lx0 + frac * (lx1 - lx0)), "in range")
    fit_ref, fit_ch = fit_power_law(list(ref), list(ref.values())), fit_power_law(list(ch), list(ch.values()))
    extrapolated = None
    if fit_ref and fit_ch and fit_ref.exponent > fit_ch.exponent:
        x = math.exp(math.log(fit_ch.prefactor / fit_ref.prefactor) / (fit_ref.exponent - fit_ch.exponent))
        extrapolated = x if x > common[-1] else None
    return Crossover(None, f"none in range: still dearer at the longest common length {common[-1]:g}", extrapolated)
