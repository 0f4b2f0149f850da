"""Power-law fits and crossovers recover known exponents and intersections."""

import math

import pytest

from seqmix.train.tools.bench.powerlaw import crossover, fit_power_law

LENGTHS = [256, 512, 1024, 2048, 4096, 8192]


@pytest.mark.parametrize("exponent", [0.0, 1.0, 1.5, 2.0])
def test_fit_recovers_exact_power_law(exponent):
    law = fit_power_law(LENGTHS, [3e-5 * n**exponent for n in LENGTHS])
    assert law.exponent == pytest.approx(exponent, abs=1e-9)
    assert law.prefactor == pytest.approx(3e-5, rel=1e-9)
    assert law.r2 == pytest.approx(1.0)
    assert (law.n_points, law.x_min, law.x_max) == (6, 256, 8192)
    assert law(1000) == pytest.approx(3e-5 * 1000**exponent)


def test_fit_with_multiplicative_noise_is_close():
    noise = [1.05, 0.96, 1.03, 0.97, 1.04, 0.95]
    law = fit_power_law(LENGTHS, [2e-9 * n**2 * e for n, e in zip(LENGTHS, noise, strict=True)])
    assert abs(law.exponent - 2.0) < 0.05
    assert 0.99 < law.r2 < 1.0


def test_fit_ignores_missing_and_needs_two_lengths():
    assert fit_power_law([512, 1024], [1.0, float("nan")]) is None
    assert fit_power_law([512, 512], [1.0, 2.0]) is None
    law = fit_power_law([256, 512, 1024], [1.0, 0.0, 4.0])  # a zero (no measurement) is dropped
    assert law.n_points == 2 and law.exponent == pytest.approx(1.0)
    with pytest.raises(ValueError, match="differ in length"):
        fit_power_law([1, 2], [1.0])


def test_crossover_of_two_power_laws_inside_the_range():
    # attention-like 1e-6 L^2 against linear 1e-3 L: equal at L = 1000
    c = crossover(LENGTHS, [1e-6 * n**2 for n in LENGTHS], LENGTHS, [1e-3 * n for n in LENGTHS])
    assert c.status == "in range"
    assert c.length == pytest.approx(1000.0, rel=1e-9)


def test_crossover_uses_only_common_lengths():
    ref_lengths = LENGTHS[:4]  # the quadratic arm stopped (timed out) after 2048
    c = crossover(ref_lengths, [1e-6 * n**2 for n in ref_lengths], LENGTHS, [1e-3 * n for n in LENGTHS])
    assert c.length == pytest.approx(1000.0, rel=1e-9)


def test_no_crossover_when_already_cheaper():
    c = crossover(LENGTHS, [1e-6 * n**2 for n in LENGTHS], LENGTHS, [1e-5 * n for n in LENGTHS])
    assert c.length is None and "already cheaper" in c.status


def test_no_crossover_in_range_gives_the_extrapolated_one():
    c = crossover(LENGTHS, [1e-6 * n**2 for n in LENGTHS], LENGTHS, [0.1 * n for n in LENGTHS])
    assert c.length is None and "still dearer" in c.status
    assert c.extrapolated == pytest.approx(1e5, rel=1e-9)
    parallel = crossover(LENGTHS, [1e-3 * n for n in LENGTHS], LENGTHS, [2e-3 * n for n in LENGTHS])
    assert parallel.length is None and parallel.extrapolated is None


def test_crossover_without_common_lengths():
    c = crossover([256], [1.0], [512], [1.0])
    assert c.length is None and "no length" in c.status
    assert math.isfinite(crossover([1, 2], [1.0, 4.0], [1, 2], [2.0, 3.0]).length)
