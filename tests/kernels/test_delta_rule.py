"""The (gated) delta rule: the chunked WY / UT form and the step against the sequential reference, and bad input."""

from __future__ import annotations

import pytest
import torch

from seqmix import kernels
from seqmix.kernels.delta_rule import delta_rule_step

from .recurrence_cases import DELTA, check_forms_agree, leaves, rel_err

TOL = DELTA.tol  # see recurrence_cases (the chunked form, step and segments are checked in test_recurrence_forms)


def test_strong_decay_stays_finite_and_exact():
    check_forms_agree(DELTA, 1, 2, 40, 4, 3, "head", 64, decay_scale=80.0)


def test_beta_one_on_orthonormal_keys_stores_each_value_exactly():
    """One gradient step with beta = 1 on a unit key replaces what the memory returns for it: k S = v afterwards."""
    dk, dv = 6, 3
    keys = torch.linalg.qr(torch.randn(dk, dk, dtype=torch.float64))[0][:4]  # 4 orthonormal rows
    k = keys[None, None]  # (1, 1, 4, dk)
    v, old = torch.randn(1, 1, 4, dv, dtype=torch.float64), torch.randn(1, 1, dk, dv, dtype=torch.float64)
    _, s = kernels.delta_rule(k, k, v, torch.ones(1, 1, 4, dtype=torch.float64), state=old, chunk_size=2)
    torch.testing.assert_close(k @ s, v, rtol=1e-12, atol=1e-12)
    other = torch.linalg.qr(torch.randn(dk, dk, dtype=torch.float64))[0]
    rest = other - (other @ keys.T) @ keys  # directions orthogonal to every written key are left alone
    torch.testing.assert_close(rest @ s[0, 0], rest @ old[0, 0], rtol=1e-12, atol=1e-12)


def test_beta_zero_writes_nothing_and_decay_only_shrinks():
    ins = DELTA.inputs(1, 2, 9, 4, 3, "head", seed=7)
    o, s = kernels.delta_rule(ins["q"], ins["k"], ins["v"], torch.zeros(1, 2, 9), ins["log_decay"], ins["state"])
    total = ins["log_decay"].sum(-1).exp()[..., None, None]
    assert rel_err(s, total * ins["state"]) <= TOL


def test_state_is_fp32_for_low_precision_inputs():
    ins = DELTA.inputs(1, 2, 10, 4, 4, "head", seed=5)
    low = {n: t.bfloat16() for n, t in ins.items()}
    o, s = kernels.delta_rule(low["q"], low["k"], low["v"], low["beta"], low["log_decay"])
    assert o.dtype == torch.bfloat16 and s.dtype == torch.float32


def test_empty_sequence_returns_the_start_state():
    ins = DELTA.inputs(2, 2, 0, 3, 4, "head")
    o, s = DELTA.run(kernels.delta_rule, ins)
    assert o.shape == (2, 2, 0, 4) and torch.equal(s, ins["state"])


BAD = {
    "beta shape": (dict(beta=torch.zeros(2, 3, 4)), r"beta must have shape \(batch, heads, seqlen\) = \(2, 3, 5\); got"),
    "beta per channel": (dict(beta=torch.zeros(2, 3, 5, 4)), r"beta must have shape .* = \(2, 3, 5\); got \(2, 3, 5, 4\)"),
    "decay per channel": (dict(log_decay=torch.zeros(2, 3, 5, 4)), r"log_decay must have shape \(2, 3, 5\); got \(2, 3, 5"),
    "positive decay": (dict(log_decay=torch.full((2, 3, 5), 1.5)), r"log_decay must be <= 0 .*; got a maximum of 1.5"),
    "k shape": (dict(k=torch.zeros(2, 3, 5, 3)), r"k must have shape"),
    "state shape": (dict(state=torch.zeros(2, 3, 2, 4)), r"state must have shape \(batch, heads, dk, dv\) = \(2, 3, 4, 2\)"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_naming_the_value(case):
    override, message = BAD[case]
    args = dict(q=torch.zeros(2, 3, 5, 4), k=torch.zeros(2, 3, 5, 4), v=torch.zeros(2, 3, 5, 2), beta=torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match=r"^delta_rule: " + message) as err:
        kernels.delta_rule(**(args | override))
    assert "\n" not in str(err.value)


def test_bf16_autocast_changes_nothing_inside_the_kernel():
    ins = DELTA.inputs(1, 2, 20, 4, 3, "head", seed=6)

    def run(enabled: bool):
        xs = leaves(ins)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            o, s = DELTA.run(DELTA.chunked, xs, chunk_size=8)
            y, s2 = delta_rule_step(*(xs[n][:, :, 0] for n in ("q", "k", "v", "beta", "log_decay")), s)
        (o.sum() + s2.sum() + y.sum()).backward()  # outside autocast, as Lightning runs it
        return [o, s2, y] + [t.grad for t in xs.values() if t is not None]

    for got, want in zip(run(True), run(False), strict=True):
        assert got.dtype == torch.float32 and torch.equal(got, want)
