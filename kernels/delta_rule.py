"""The (gated) delta rule: S_t = a_t S_{t-1}; S_t += k_t^T (beta_t (v_t - k_t S_t)); o_t = q_t S_t.

Linear attention that writes by one step of gradient descent on ||k S - v||^2 (DeltaNet), optionally decaying the
state first (Gated DeltaNet, a_t = exp(log_decay_t)). Three forms: `delta_rule_reference` (a loop over L, the
ground truth), `delta_rule` (the chunked WY / UT representation: parallel inside chunks, a running state across
them; on CUDA, flash-linear-attention's kernels when installed, see fla_backend) and `delta_rule_step` (one decode
token). Layout (B, H, L, d); q is used as given; the state is at least fp32.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .fla_backend import fla_delta_rule, resolve_recurrence_backend
from .gated_linear_attention import _causal_mask, by_segments, chunk_decays, pad_to_chunks, start_state, to_dtype
from .optional import common_dtype
from .validate import check_recurrence_inputs, outside_autocast

DEFAULT_CHUNK = 64


@outside_autocast
def delta_rule(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    beta: Tensor,
    log_decay: Tensor | None = None,
    state: Tensor | None = None,
    chunk_size: int | None = None,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Causal (gated) delta rule over a sequence; returns o (B, H, L, dv) and the final state (B, H, dk, dv).

    The chunked form: inside a chunk starting from S_0, with b_t the cumulative log decay since the chunk's start,
    the writes u_t = beta_t (v_t - k_t S_{t-1}) satisfy (I + diag(beta) tril_{-1}(K K^T * exp(b_t - b_s))) u
    = diag(beta) (V - diag(exp b) K S_0). So u = U - W S_0 with U and W from one unit-triangular solve per chunk
    (independent of S_0), and only the cheap S_0-dependent part runs in a loop over chunks; memory O(L * C).
    backend: `torch` (that form, chunks of chunk_size tokens), `fla` (flash-linear-attention, CUDA; its own tiles)
    or `auto` (fla where it runs, else torch); see fla_backend.resolve_recurrence_backend.
    """
    check_recurrence_inputs(
        "delta_rule", q, k, v, beta=beta, log_decay=log_decay, state=state, chunk_size=chunk_size, per_channel_decay=False
    )
    name = resolve_recurrence_backend(backend, q.device, common_dtype(q, k, v), delta_head_k=q.shape[-1])
    s = start_state(q, v, state)
    if q.shape[2] == 0:
        return v.new_zeros(v.shape, dtype=q.dtype), s
    if name == "fla":
        return fla_delta_rule(q, k, v, beta, log_decay, s)
    tensors = to_dtype(s.dtype, q, k, v, beta, log_decay)
    o, s = by_segments(_delta_segment, chunk_size or DEFAULT_CHUNK, tensors, s)
    return o.to(q.dtype), s


@outside_autocast
def delta_rule_step(
    q: Tensor, k: Tensor, v: Tensor, beta: Tensor, log_decay: Tensor | None, state: Tensor
) -> tuple[Tensor, Tensor]:
    """One token: q, k (B, H, dk), v (B, H, dv), beta and log_decay (B, H) -> o (B, H, dv), new state."""
    dt = state.dtype
    q, k, v, beta = q.to(dt), k.to(dt), v.to(dt), beta.to(dt)
    if log_decay is not None:
        state = state * log_decay.to(dt).exp()[..., None, None]
    predicted = (k[..., None, :] @ state)[..., 0, :]  # (B, H, dv): what the memory returns for k
    state = state + k[..., :, None] * (beta[..., None] * (v - predicted))[..., None, :]
    return (q[..., None, :] @ state)[..., 0, :], state


@outside_autocast
def delta_rule_reference(
    q: Tensor, k: Tensor, v: Tensor, beta: Tensor, log_decay: Tensor | None = None, state: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The recurrence as written, one token at a time (slow; the ground truth for the other forms)."""
    s = start_state(q, v, state)
    out_dtype, (q, k, v, beta, log_decay) = q.dtype, to_dtype(s.dtype, q, k, v, beta, log_decay)
    outs = []
    for t in range(q.shape[2]):
        g = None if log_decay is None else log_decay[:, :, t]
        o, s = delta_rule_step(q[:, :, t], k[:, :, t], v[:, :, t], beta[:, :, t], g, s)
        outs.append(o)
    o = torch.stack(outs, dim=2) if outs else v.new_zeros(v.shape)
    return o.to(out_dtype), s


def _delta_segment(
    q: Tensor, k: Tensor, v: Tensor, beta: Tensor, log_decay: Tensor | None, state: Tensor, size: int
) -> tuple[Tensor, Tensor]:
    """The chunked WY / UT form over one segment, all its chunks at once, from `state`."""
    b, h, length, dk = q.shape
    dv = v.shape[-1]
    n, (q, k, v, beta, log_decay) = pad_to_chunks(size, q, k, v, beta, log_decay)
    qc, kc = q.reshape(b, h, n, size, dk), k.reshape(b, h, n, size, dk)  # (B, H, n, C, dk)
    vc, bc = v.reshape(b, h, n, size, dv), beta.reshape(b, h, n, size, 1)  # (B, H, n, C, dv), (B, H, n, C, 1)

    if log_decay is None:
        decay = _causal_mask(size, q.device).to(q.dtype)  # (C, C)
        k_in, q_in, k_out, chunk_a = kc, qc, kc, None
    else:
        decay, q_decay, k_decay, chunk_log = chunk_decays(log_decay, n, size)
        q_decay, k_decay = q_decay[..., None], k_decay[..., None]  # (B, H, n, C, 1)
        k_in, q_in, k_out = kc * q_decay, qc * q_decay, kc * k_decay
        chunk_a = chunk_log.exp()[..., None, None]  # (B, H, n, 1, 1)
    kk = (kc @ kc.transpose(-1, -2)) * decay  # (B, H, n, C, C)
    eye = torch.eye(size, dtype=q.dtype, device=q.device)
    system = eye + (bc * kk).tril(-1)  # unit lower-triangular
    rhs = torch.cat([bc * vc, bc * k_in], dim=-1)  # (B, H, n, C, dv + dk)
    u_free, w = torch.linalg.solve_triangular(system, rhs, upper=False, unitriangular=True).split([dv, dk], dim=-1)

    before, writes = [], []
    # unbind once: indexing chunk i inside the loop would make each backward step allocate the whole tensor (O(n^2))
    decays = [None] * n if chunk_a is None else chunk_a.unbind(2)
    for u_i, w_i, k_i, a_i in zip(u_free.unbind(2), w.unbind(2), k_out.unbind(2), decays, strict=True):
        before.append(state)  # u = U - W S_0, then S_C = a_C S_0 + K_out^T u
        u = u_i - w_i @ state  # (B, H, C, dv)
        writes.append(u)
        state = (state if a_i is None else a_i * state) + k_i.transpose(-1, -2) @ u
    s_before, u = torch.stack(before, dim=2), torch.stack(writes, dim=2)  # (B, H, n, dk, dv), (B, H, n, C, dv)
    scores = (qc @ kc.transpose(-1, -2)) * decay  # (B, H, n, C, C), zero above the diagonal
    o = q_in @ s_before + scores @ u  # (B, H, n, C, dv)
    return o.reshape(b, h, n * size, dv)[:, :, :length], state
