"""Triton selective scan: chunked forward and backward kernels built on tl.associative_scan.

One program owns (batch, group, block of channels) and walks L in chunks of BLOCK_L steps, holding the
(BLOCK_H, N) state in registers. Inside a chunk the recurrence h_t = a_t h_{t-1} + x_t is a parallel scan of
(decay, value) pairs; the forward writes only each chunk's start state, and the backward walks the chunks in
reverse, recomputing the chunk's states from that start state with the same scan (a_t h_{t-1} = h_t - x_t, so no
second, shifted scan) and running the adjoint as a reverse scan. `python -m seqmix.kernels.aot` shows what the
block sizes below cost in registers on sm_80 / sm_90.
Import this module only where Triton can run: on CUDA, or with TRITON_INTERPRET=1 set before the import.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch import Tensor

from .groups import as_grouped
from .scan_inputs import ScanInputs
from .scan_ref import selective_scan_ref

# Whether the kernels below run in Triton's CPU interpreter; fixed when they are decorated, i.e. at import.
_knobs = getattr(triton, "knobs", None)
INTERPRETED = bool(_knobs.runtime.interpret) if _knobs else os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _combine(a1, x1, a2, x2):
    return a1 * a2, a2 * x1 + x2


@triton.jit
def _softplus(x):
    return tl.where(x <= 20.0, tl.log(1.0 + tl.exp(x)), x)


@triton.jit
def _channel_block(A_ptr, L, H, G, N, n_chunks, BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr):
    """What a program (batch, group, block of BLOCK_H channels) works on: its channels' index in dim and in
    batch x dim, the state offsets, the channel / state masks, A in fp32 (BLOCK_H, BLOCK_N), and where its rows of
    u (BLOCK_H,), of its group's B and C (BLOCK_N,) and of its chunk-start states (BLOCK_H, BLOCK_N) begin."""
    pid_b = tl.program_id(0).to(tl.int64)
    pid_g = tl.program_id(1)
    offs_h = tl.program_id(2) * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_n = tl.arange(0, BLOCK_N)
    mask_h, mask_n = offs_h < H, offs_n < N
    mask_hn = mask_h[:, None] & mask_n[None, :]
    chan = pid_g * H + offs_h
    bchan = pid_b * (G * H) + chan
    A = tl.load(A_ptr + chan[:, None] * N + offs_n[None, :], mask=mask_hn, other=0.0).to(tl.float32)
    bc_row = ((pid_b * G + pid_g) * N + offs_n) * L
    state_row = (bchan * n_chunks)[:, None] * N + offs_n[None, :]
    return chan, bchan, offs_n, mask_h, mask_n, mask_hn, A, bchan * L, bc_row, state_row


@triton.jit
def _chunk(c, row, bc_row, mask_h, mask_n, L, BLOCK_L: tl.constexpr):
    """Chunk c's steps: their offsets in L, the (channel, step) and (step, state) masks, and the element offsets of
    u / delta / z (BLOCK_H, BLOCK_L) and of B / C (BLOCK_L, BLOCK_N)."""
    offs_l = c * BLOCK_L + tl.arange(0, BLOCK_L)
    mask_l = offs_l < L
    m_hl = mask_h[:, None] & mask_l[None, :]
    m_ln = mask_l[:, None] & mask_n[None, :]
    return offs_l, m_hl, m_ln, row[:, None] + offs_l[None, :], bc_row[None, :] + offs_l[:, None]


@triton.jit
def _chunk_states(dt, u, Bv, A, h0):
    """The chunk's decays a = exp(dt A), inputs x = dt u B and states h_t = a_t h_{t-1} + x_t from h0, each
    (BLOCK_H, BLOCK_L, BLOCK_N), by one parallel scan over the chunk's steps."""
    a = tl.exp(dt[:, :, None] * A[:, None, :])
    x = (dt * u)[:, :, None] * Bv[None, :, :]
    pa, px = tl.associative_scan((a, x), axis=1, combine_fn=_combine)
    return a, x, px + pa * h0[:, None, :]


@triton.jit
def _fwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,
    out_ptr, starts_ptr, last_ptr,
    L, H, G, N, n_chunks,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    chan, bchan, offs_n, mask_h, mask_n, mask_hn, A, row, bc_row, state_row = _channel_block(
        A_ptr, L, H, G, N, n_chunks, BLOCK_H, BLOCK_N
    )
    offs_t = tl.arange(0, BLOCK_L)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + chan, mask=mask_h, other=0.0).to(tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + chan, mask=mask_h, other=0.0).to(tl.float32)
    h = tl.zeros((BLOCK_H, BLOCK_N), dtype=tl.float32)
    for c in range(0, n_chunks):
        _, m_hl, m_ln, idx, bc_idx = _chunk(c, row, bc_row, mask_h, mask_n, L, BLOCK_L)
        tl.store(starts_ptr + state_row + c * N, h, mask=mask_hn)
        dt = tl.load(dt_ptr + idx, mask=m_hl, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dt += bias[:, None]
        if SOFTPLUS:
            dt = _softplus(dt)
        dt = tl.where(m_hl, dt, 0.0)  # steps past L: decay 1, no input
        u = tl.load(u_ptr + idx, mask=m_hl, other=0.0).to(tl.float32)
        Bv = tl.load(B_ptr + bc_idx, mask=m_ln, other=0.0).to(tl.float32)
        Cv = tl.load(C_ptr + bc_idx, mask=m_ln, other=0.0).to(tl.float32)
        _, _, hs = _chunk_states(dt, u, Bv, A, h)
        y = tl.sum(hs * Cv[None, :, :], axis=2)
        h = tl.sum(tl.where(offs_t[None, :, None] == BLOCK_L - 1, hs, 0.0), axis=1)
        if HAS_D:
            y += Dv[:, None] * u
        if HAS_Z:
            z = tl.load(z_ptr + idx, mask=m_hl, other=0.0).to(tl.float32)
            y = y * z * tl.sigmoid(z)
        tl.store(out_ptr + idx, y.to(out_ptr.dtype.element_ty), mask=m_hl)
    tl.store(last_ptr + bchan[:, None] * N + offs_n[None, :], h, mask=mask_hn)


@triton.jit
def _bwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, starts_ptr, gout_ptr, glast_ptr,
    du_ptr, ddt_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,
    L, H, G, N, n_chunks, n_hblocks,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_GOUT: tl.constexpr, HAS_GLAST: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    chan, bchan, offs_n, mask_h, mask_n, mask_hn, A, row, bc_row, state_row = _channel_block(
        A_ptr, L, H, G, N, n_chunks, BLOCK_H, BLOCK_N
    )
    offs_t = tl.arange(0, BLOCK_L)
    bias = tl.zeros((BLOCK_H,), dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + chan, mask=mask_h, other=0.0).to(tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + chan, mask=mask_h, other=0.0).to(tl.float32)
    # Partial sums over this program's channels of the per-group dB, dC: (batch, G, n_hblocks, N, L).
    pid_b, pid_g, pid_hb = tl.program_id(0).to(tl.int64), tl.program_id(1), tl.program_id(2)
    part_row = (((pid_b * G + pid_g) * n_hblocks + pid_hb) * N + offs_n) * L
    e = tl.zeros((BLOCK_H, BLOCK_N), dtype=tl.float32)  # dL/dh reaching the chunk's last step from later steps
    if HAS_GLAST:
        e = tl.load(glast_ptr + bchan[:, None] * N + offs_n[None, :], mask=mask_hn, other=0.0)
    dA_acc = tl.zeros((BLOCK_H, BLOCK_N), dtype=tl.float32)
    dD_acc = tl.zeros((BLOCK_H,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_H,), dtype=tl.float32)
    for i in range(0, n_chunks):
        c = n_chunks - 1 - i
        h0 = tl.load(starts_ptr + state_row + c * N, mask=mask_hn, other=0.0)
        offs_l, m_hl, m_ln, idx, bc_idx = _chunk(c, row, bc_row, mask_h, mask_n, L, BLOCK_L)
        # Registers cannot be shifted, so a_{t+1} for the adjoint comes from a load one step off, masked at the edges.
        m_next = ((offs_l + 1) < L) & (offs_t < BLOCK_L - 1)

        dt_raw = tl.load(dt_ptr + idx, mask=m_hl, other=0.0).to(tl.float32) + bias[:, None]
        dt_n = tl.load(dt_ptr + idx + 1, mask=mask_h[:, None] & m_next[None, :], other=0.0).to(tl.float32)
        dt_n += bias[:, None]
        if SOFTPLUS:
            dt = _softplus(dt_raw)
            dt_n = _softplus(dt_n)
        else:
            dt = dt_raw
        dt = tl.where(m_hl, dt, 0.0)
        dt_n = tl.where(mask_h[:, None] & m_next[None, :], dt_n, 0.0)
        u = tl.load(u_ptr + idx, mask=m_hl, other=0.0).to(tl.float32)
        Bv = tl.load(B_ptr + bc_idx, mask=m_ln, other=0.0).to(tl.float32)
        Cv = tl.load(C_ptr + bc_idx, mask=m_ln, other=0.0).to(tl.float32)

        a, x, h = _chunk_states(dt, u, Bv, A, h0)  # the chunk's states, recomputed from its start state

        gout = tl.zeros((BLOCK_H, BLOCK_L), dtype=tl.float32)
        if HAS_GOUT:
            gout = tl.load(gout_ptr + idx, mask=m_hl, other=0.0).to(tl.float32)
        gy = gout
        if HAS_Z:
            y = tl.sum(h * Cv[None, :, :], axis=2)
            if HAS_D:
                y += Dv[:, None] * u
            z = tl.load(z_ptr + idx, mask=m_hl, other=0.0).to(tl.float32)
            sig = tl.sigmoid(z)
            gy = gout * z * sig
            dz = gout * y * sig * (1.0 + z * (1.0 - sig))
            tl.store(dz_ptr + idx, dz.to(dz_ptr.dtype.element_ty), mask=m_hl)
        if HAS_D:
            dD_acc += tl.sum(gy * u, axis=1)

        a_n = tl.exp(dt_n[:, :, None] * A[:, None, :])  # a_{t+1}: 1 at the chunk's last step (its share is in e)
        ga, gs = tl.associative_scan((a_n, gy[:, :, None] * Cv[None, :, :]), axis=1, combine_fn=_combine, reverse=True)
        g = gs + ga * e[:, None, :]
        e = tl.sum(tl.where(offs_t[None, :, None] == 0, a * g, 0.0), axis=1)

        q = g * (h - x)  # dL/d(dt * A) per step and state: g_t * a_t * h_{t-1}, without h_{t-1}
        dA_acc += tl.sum(q * dt[:, :, None], axis=1)
        gB = tl.sum(g * Bv[None, :, :], axis=2)
        ddt = tl.sum(q * A[:, None, :], axis=2) + u * gB
        du = dt * gB
        if HAS_D:
            du += Dv[:, None] * gy
        if SOFTPLUS:
            ddt = ddt * tl.sigmoid(dt_raw)
        ddt = tl.where(m_hl, ddt, 0.0)
        dbias_acc += tl.sum(ddt, axis=1)
        tl.store(du_ptr + idx, du.to(du_ptr.dtype.element_ty), mask=m_hl)
        tl.store(ddt_ptr + idx, ddt.to(ddt_ptr.dtype.element_ty), mask=m_hl)
        dB = tl.sum(g * (dt * u)[:, :, None], axis=0)
        dC = tl.sum(h * gy[:, :, None], axis=0)
        part_idx = part_row[None, :] + offs_l[:, None]
        tl.store(dB_ptr + part_idx, dB, mask=m_ln)
        tl.store(dC_ptr + part_idx, dC, mask=m_ln)
    out_row = bchan[:, None] * N + offs_n[None, :]
    tl.store(dA_ptr + out_row, dA_acc, mask=mask_hn)
    tl.store(dD_ptr + bchan, dD_acc, mask=mask_h)
    tl.store(dbias_ptr + bchan, dbias_acc, mask=mask_h)


def _pow2(n: int) -> int:
    return max(2, triton.next_power_of_2(n))


# The backward keeps about three times as many (H, L, N) tensors live as the forward: a smaller tile (at least 2
# channels, so 2 x BLOCK_L x N values when N is large).
FWD_TILE, BWD_TILE = 4096, 1024
FWD_WARPS, BWD_WARPS = 4, 4
MAX_BLOCK_L = 16


def _blocks(H: int, N: int, blocks: tuple[int | None, int | None], tile: int) -> tuple[int, int, int]:
    """BLOCK_H, BLOCK_L, BLOCK_N: by default about `tile` fp32 values per (H, L, N) register tensor.

    BLOCK_L depends on N only, as the backward must walk the chunks the forward stored start states for: 16 up to
    N = 64, then shorter so that the backward's tile stays at 2 x BLOCK_L x N <= 2048 values. At BLOCK_L = 32 the
    backward spilled registers on sm_80 / sm_90 at N = 16 and 64 (python -m seqmix.kernels.aot; README, Kernels).
    """
    block_h, block_l = blocks
    block_n = _pow2(N)
    block_l = _pow2(block_l) if block_l else min(MAX_BLOCK_L, max(2, BWD_TILE // block_n))
    block_h = _pow2(block_h) if block_h else min(_pow2(H), max(2, tile // (block_l * block_n)))
    return block_h, block_l, block_n


def fwd_meta(H: int, N: int, blocks: tuple[int | None, int | None] = (None, None)) -> dict[str, int]:
    """The forward kernel's block sizes and warps for H channels per group and N states."""
    BH, BL, BN = _blocks(H, N, blocks, FWD_TILE)
    return dict(BLOCK_H=BH, BLOCK_L=BL, BLOCK_N=BN, num_warps=FWD_WARPS)


def bwd_meta(H: int, N: int, blocks: tuple[int | None, int | None] = (None, None)) -> dict[str, int]:
    """The backward kernel's block sizes and warps for H channels per group and N states."""
    BH, BL, BN = _blocks(H, N, blocks, BWD_TILE)
    return dict(BLOCK_H=BH, BLOCK_L=BL, BLOCK_N=BN, num_warps=BWD_WARPS)


def _features(x: ScanInputs) -> dict[str, bool]:
    """The constexpr switches both kernels compile for: which optional inputs there are, and the softplus."""
    return dict(HAS_D=x.D is not None, HAS_Z=x.z is not None, HAS_BIAS=x.delta_bias is not None, SOFTPLUS=x.delta_softplus)


class _SelectiveScanTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, blocks, *fields):  # fields: ScanInputs' own, each tensor its own argument for autograd
        x = ScanInputs(*fields)
        batch, dim, length = x.u.shape
        G, N = x.groups, x.A.shape[1]
        H = dim // G
        u_, dt_ = x.u.contiguous(), x.delta.contiguous()
        B_ = as_grouped(x.B, G).contiguous()
        C_ = as_grouped(x.C, G).contiguous()
        A_ = x.A.contiguous()
        z_ = x.z.contiguous() if x.z is not None else None
        D_ = x.D.contiguous() if x.D is not None else None
        bias_ = x.delta_bias.contiguous() if x.delta_bias is not None else None
        meta = fwd_meta(H, N, blocks)
        n_chunks = triton.cdiv(length, meta["BLOCK_L"])
        out = torch.empty_like(u_)
        starts = x.u.new_empty(batch, dim, n_chunks, N, dtype=torch.float32)
        last = x.u.new_empty(batch, dim, N, dtype=torch.float32)
        grid = (batch, G, triton.cdiv(H, meta["BLOCK_H"]))
        _fwd_kernel[grid](
            u_, dt_, A_, B_, C_, D_, z_, bias_, out, starts, last,
            length, H, G, N, n_chunks,
            **_features(x), **meta,
        )  # fmt: skip
        ctx.save_for_backward(u_, dt_, A_, x.B, x.C, D_, z_, bias_, starts)
        ctx.delta_softplus, ctx.blocks = x.delta_softplus, blocks
        ctx.set_materialize_grads(False)
        return out, last

    @staticmethod
    def backward(ctx, gout, glast):
        *tensors, starts = ctx.saved_tensors
        x = ScanInputs(*tensors, ctx.delta_softplus)
        batch, dim, length = x.u.shape
        G, N = x.groups, x.A.shape[1]
        H = dim // G
        meta = bwd_meta(H, N, ctx.blocks)
        n_chunks, n_hblocks = starts.shape[2], triton.cdiv(H, meta["BLOCK_H"])
        B_ = as_grouped(x.B, G).contiguous()
        C_ = as_grouped(x.C, G).contiguous()
        du, ddelta = torch.empty_like(x.u), torch.empty_like(x.delta)
        dz = torch.empty_like(x.z) if x.z is not None else None
        f32 = dict(device=x.u.device, dtype=torch.float32)
        dA = torch.empty(batch, dim, N, **f32)
        dB = torch.empty(batch, G, n_hblocks, N, length, **f32)
        dC = torch.empty(batch, G, n_hblocks, N, length, **f32)
        dD, dbias = torch.empty(batch, dim, **f32), torch.empty(batch, dim, **f32)
        grid = (batch, G, n_hblocks)
        _bwd_kernel[grid](
            x.u, x.delta, x.A, B_, C_, x.D, x.z, x.delta_bias, starts,
            gout.contiguous() if gout is not None else None,
            glast.float().contiguous() if glast is not None else None,
            du, ddelta, dz, dA, dB, dC, dD, dbias,
            length, H, G, N, n_chunks, n_hblocks,
            **_features(x), HAS_GOUT=gout is not None, HAS_GLAST=glast is not None,
            **meta,
        )  # fmt: skip
        return None, *x.gradients(du, ddelta, dA.sum(0), dB.sum(2), dC.sum(2), dD.sum(0), dz, dbias.sum(0))


def selective_scan_triton(
    x: ScanInputs, block_l: int | None = None, block_h: int | None = None
) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan with Triton forward and backward kernels (fp32 state, output in u's dtype)."""
    if x.u.device.type == "cpu" and not INTERPRETED:
        raise RuntimeError(
            "backend 'triton' needs CUDA tensors or TRITON_INTERPRET=1 set before kernels.scan_triton is first "
            "imported; got device cpu"
        )
    if x.u.shape[-1] == 0:
        return selective_scan_ref(x)
    return x.output(*_SelectiveScanTriton.apply((block_h, block_l), *x))


def aot_launches(d_state: int) -> list:
    """The forward and backward launches a Mamba block (D, z, dt bias, softplus, ungrouped B/C, fp32) makes.

    Two problem shapes, as Triton specialises integer arguments on divisibility by 16: d_inner 1536 at L 2048
    (every size aligned) and at L 1000 (the sequence length not).
    """
    return [launch for length in (2048, 1000) for launch in _mamba_launches(d_state, 1536, length)]


def _mamba_launches(d_state: int, d_inner: int, length: int) -> list:
    from .aot import KernelLaunch

    flags = dict(HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True)
    f, b = fwd_meta(d_inner, d_state), bwd_meta(d_inner, d_state)
    fw, bw = f.pop("num_warps"), b.pop("num_warps")
    ints = dict(L=length, H=d_inner, G=1, N=d_state)
    fwd_ptrs = "u dt A B C D z bias out starts last".split()
    bwd_ptrs = "u dt A B C D z bias starts gout glast du ddt dz dA dB dC dD dbias".split()
    label = f"d_state {d_state}, d_inner {d_inner}, L {length}"
    return [
        KernelLaunch(
            label, _fwd_kernel, {**{f"{p}_ptr": "*fp32" for p in fwd_ptrs}, **ints, "n_chunks": -(-length // f["BLOCK_L"])},
            {**flags, **f}, num_warps=fw,
        ),
        KernelLaunch(
            label, _bwd_kernel,
            {
                **{f"{p}_ptr": "*fp32" for p in bwd_ptrs}, **ints, "n_chunks": -(-length // b["BLOCK_L"]),
                "n_hblocks": -(-d_inner // b["BLOCK_H"]),
            },
            {**flags, "HAS_GOUT": True, "HAS_GLAST": False, **b}, num_warps=bw,
        ),
    ]
