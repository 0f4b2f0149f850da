"""Random inputs for the linear-recurrence kernels (gated linear attention, delta rule, Mamba-2's SSD), a
relative-error helper, and the check that a kernel's chunked form matches its sequential reference."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

from seqmix.kernels.delta_rule import delta_rule, delta_rule_reference, delta_rule_step
from seqmix.kernels.gated_linear_attention import gated_linear_attention, gla_reference, gla_step

DECAYS = (None, "head", "channel")  # no decay, one log decay per (head, step), one per (head, step, key channel)


def rel_err(actual: Tensor, expected: Tensor) -> float:
    """Norm-wise relative error ||actual - expected|| / ||expected||.

    The scale is at least 0.1 per element (RMS): the inputs are O(1), and where a result nearly cancels or is zero
    (a tiny problem, dk = dv = 1; the decay's gradient when the state is still zero) no fp32 evaluation order, the
    reference's included, is relatively exact; there the check becomes an absolute 1e-6 per element, a few fp32
    roundings of the O(1) terms that cancelled.
    """
    floor = 0.1 * expected.numel() ** 0.5
    scale = max(expected.double().norm().item(), floor)
    return (actual.double() - expected.double()).norm().item() / scale


def recurrence_inputs(
    b: int, h: int, length: int, dk: int, dv: int, decay: str | None, *, seed: int = 0, start_state: bool = True,
    beta: bool = False, normalize_k: bool = False, dtype: torch.dtype = torch.float32, decay_scale: float = 1.0,
) -> dict[str, Tensor | None]:
    """q, k, v, optional beta in (0, 1), log_decay <= 0 of the requested kind, and an optional nonzero start state."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    k = r(b, h, length, dk)
    if normalize_k:  # the delta rule is a contraction only for beta * ||k||^2 <= 2
        k = torch.nn.functional.normalize(k, dim=-1)
    shapes = {None: None, "head": (b, h, length), "channel": (b, h, length, dk)}
    log_decay = None if decay is None else -torch.rand(*shapes[decay], generator=g, dtype=torch.float64) * decay_scale
    ins = {
        "q": r(b, h, length, dk),
        "k": k,
        "v": r(b, h, length, dv),
        "beta": torch.rand(b, h, length, generator=g, dtype=torch.float64) if beta else None,
        "log_decay": log_decay,
        "state": r(b, h, dk, dv) if start_state else None,
    }
    return {name: None if t is None else t.to(dtype) for name, t in ins.items()}


def ssd_inputs(b: int = 2, h: int = 4, g: int = 2, length: int = 13, p: int = 3, n: int = 5, seed: int = 0,
               dtype: torch.dtype = torch.float64) -> dict[str, Tensor]:
    """Mamba-2 SSD inputs: x, discretised dt >= 0, A <= 0, grouped B and C, and a nonzero start state."""
    gen = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=gen, dtype=dtype)

    dt = torch.nn.functional.softplus(r(b, h, length))
    A = -torch.rand(h, generator=gen, dtype=dtype)
    return {"x": r(b, h, length, p), "dt": dt, "A": A, "B": r(b, g, length, n), "C": r(b, g, length, n),
            "state": r(b, h, n, p)}


def leaves(ins: dict[str, Tensor | None]) -> dict[str, Tensor | None]:
    """Fresh copies that require grad, so two forms can be differentiated independently."""
    return {n: None if t is None else t.detach().clone().requires_grad_() for n, t in ins.items()}


@dataclass(frozen=True)
class Recurrence:
    """One linear-recurrence kernel's three forms and the inputs it takes (beta for the delta rule)."""

    name: str
    reference: Callable
    chunked: Callable
    step: Callable
    decays: tuple[str | None, ...]
    beta: bool  # the delta rule's write strength; its keys are L2-normalised, the regime DeltaNet runs in
    tol: float

    def inputs(self, b: int, h: int, length: int, dk: int, dv: int, decay: str | None, **kw) -> dict[str, Tensor | None]:
        """recurrence_inputs with this kernel's beta and key normalisation."""
        return recurrence_inputs(b, h, length, dk, dv, decay, beta=self.beta, normalize_k=self.beta, **kw)

    def run(self, fn: Callable, ins: dict[str, Tensor | None], **kw) -> tuple[Tensor, Tensor]:
        """Call one form of this kernel on `ins`."""
        beta = (ins["beta"],) if self.beta else ()
        return fn(ins["q"], ins["k"], ins["v"], *beta, ins["log_decay"], ins["state"], **kw)

    def run_step(self, ins: dict[str, Tensor | None], t: int, state: Tensor) -> tuple[Tensor, Tensor]:
        """The one-token step on token t of `ins` (B, H, L, d), from `state`."""
        at = {n: None if x is None or n == "state" else x[:, :, t] for n, x in ins.items()}  # (B, H, d) or (B, H)
        return self.run(self.step, {**at, "state": state})


def check_forms_agree(rec: Recurrence, b: int, h: int, length: int, dk: int, dv: int, decay: str | None,
                      chunk: int | None, start_state: bool = True, seed: int = 0, decay_scale: float = 1.0,
                      form: Callable | None = None) -> None:
    """The chunked form (or `form`, called like it) matches the sequential reference: outputs, final state (fp32)
    and every input's gradient."""
    ins = rec.inputs(b, h, length, dk, dv, decay, seed=seed, start_state=start_state, decay_scale=decay_scale)
    ref_in, chk_in = leaves(ins), leaves(ins)
    o_ref, s_ref = rec.run(rec.reference, ref_in)
    o, s = rec.run(form or rec.chunked, chk_in, chunk_size=chunk)
    assert o.shape == (b, h, length, dv) and s.shape == (b, h, dk, dv) and s.dtype == torch.float32
    assert rel_err(o, o_ref) <= rec.tol and rel_err(s, s_ref) <= rec.tol
    g = torch.Generator().manual_seed(seed + 1)
    w_o, w_s = torch.randn(o.shape, generator=g), torch.randn(s.shape, generator=g)
    ((o_ref * w_o).sum() + (s_ref * w_s).sum()).backward()
    ((o * w_o).sum() + (s * w_s).sum()).backward()
    for name, t in chk_in.items():
        if t is not None:
            assert rel_err(t.grad, ref_in[name].grad) <= rec.tol, name


# norm-wise relative error allowed between fp32 forms. GLA: measured ~1e-7 outputs, ~1e-6 gradients. Delta rule:
# ~1e-7 to 1e-6 with L2-normalised keys (a contraction only for beta * ||k||^2 <= 2, so raw keys amplify rounding)
# the chunked forms are the public kernels' torch backend
GLA = Recurrence("gla", gla_reference, partial(gated_linear_attention, backend="torch"), gla_step, DECAYS, beta=False,
                 tol=1e-5)
DELTA = Recurrence("delta_rule", delta_rule_reference, partial(delta_rule, backend="torch"), delta_rule_step,
                   (None, "head"), beta=True, tol=1e-5)
