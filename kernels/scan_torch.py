"""Chunked selective scan in plain PyTorch: parallel over L, fast on CPU, with a memory-lean custom backward.

Why chunks advanced together rather than log-space or Blelloch: Mamba-1's decay exp(delta_t * A) differs per
(channel, state), so a log-space closed form needs exp of positive cumulative sums (overflow for large
delta*|A|) or a (T x T x N) kernel per channel (T times the work), and Blelloch / Hillis-Steele add a log L
factor of full passes. Here L is cut into chunks of T steps; a slab of k chunks advances together through a
Python loop of T steps over (batch, G, k, H, N) tensors, and chunk boundary states are carried by a short loop
over chunks. Work stays O(B D L N) and every exponent is delta * A <= 0 (a chunk's total decay uses the sum of
its own deltas, never a difference of long cumulative sums), so large delta*|A| and long L stay finite.

Slabs are sized (SLAB_ELEMS) to keep their buffers in cache; when batch * D * N alone fills a slab, k = 1 and
chunks run one after another, and with small batch * D many chunks run in parallel. Inputs are cast, discretised
and re-laid-out slab by slab, so no (B, D, L, N) tensor, nor any fp32 copy of a whole input, is materialised.
The backward saves only the chunk-start states (B, D, L/T, N) and recomputes each slab's states.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .groups import as_grouped
from .scan_inputs import ScanInputs
from .scan_ref import selective_scan_ref

CHUNK = 32
# Cap, in fp32 elements, on each (T, batch, G, k, H, N) buffer of one slab of k chunks: bounds memory at any L
# and keeps the step loops in cache instead of DRAM.
SLAB_ELEMS = 1 << 19


def _steps(x: Tensor, groups: int, T: int) -> Tensor:
    """(batch, dim, k*T) -> (T, batch, G, k, H) contiguous, so one step of every chunk is one block."""
    b, d, n = x.shape
    return x.reshape(b, groups, d // groups, n // T, T).permute(4, 0, 1, 3, 2).contiguous()


def _unsteps(x: Tensor) -> Tensor:
    """(T, batch, G, k, H) -> (batch, G*H, k*T)."""
    T, b, g, k, h = x.shape
    return x.permute(1, 2, 4, 3, 0).reshape(b, g * h, k * T)


def _bc_steps(M: Tensor, T: int) -> Tensor:
    """(batch, G, N, k*T) -> (T, batch, G, k, 1, N) contiguous."""
    b, g, n, m = M.shape
    return M.reshape(b, g, n, m // T, T).permute(4, 0, 1, 3, 2).unsqueeze(-2).contiguous()


def _bc_unsteps(x: Tensor) -> Tensor:
    """(T, batch, G, k, 1, N) -> (batch, G, N, k*T)."""
    T, b, g, k, _, n = x.shape
    return x.squeeze(-2).permute(1, 2, 4, 3, 0).reshape(b, g, n, k * T)


class _Slab:
    """Chunks [c0, c1) of the inputs in fp32 and step layout; steps past L are zero (decay 1, no input)."""

    def __init__(self, scan: _Scan, c0: int, c1: int):
        T, G = scan.T, scan.groups
        self.t0, self.t1 = c0 * T, min(c1 * T, scan.length)
        self.k, self.n = c1 - c0, self.t1 - self.t0
        pad = self.k * T - self.n
        span = slice(self.t0, self.t1)

        def steps(x: Tensor) -> Tensor:
            return _steps(F.pad(x, (0, pad)) if pad else x, G, T)

        def bc_steps(x: Tensor) -> Tensor:
            x = x[..., span].float()
            return _bc_steps(F.pad(x, (0, pad)) if pad else x, T)

        dt_raw, dt = scan.x.discretised(span)
        # Kept in (batch, D, n) layout for the softplus derivative in the backward.
        self.dt_raw = dt_raw if scan.x.delta_softplus else None
        self.u_flat = scan.x.u[..., span].float()
        self.dt, self.u = steps(dt), steps(self.u_flat)
        self.du = self.dt * self.u
        self.B, self.C = bc_steps(scan.B), bc_steps(scan.C)
        self.shape = (T, *self.dt.shape[1:], scan.d_state)

    def flat(self, x: Tensor) -> Tensor:
        """Step layout (T, batch, G, k, H) -> (batch, D, n), dropping padded steps."""
        return _unsteps(x)[..., : self.n]


class _Scan:
    """One selective-scan problem: the inputs, chunking and slab plan, and reusable slab workspaces."""

    def __init__(self, x: ScanInputs, chunk: int):
        batch, dim, length = x.u.shape
        self.x = x
        self.length, self.groups, self.d_state = length, x.groups, x.A.shape[1]
        self.T = T = max(1, min(chunk, length))
        self.nc = -(-length // T)
        G, H = self.groups, dim // self.groups
        self.B, self.C = as_grouped(x.B, G), as_grouped(x.C, G)
        self.A = x.A.float().reshape(G, 1, H, self.d_state)
        self.state_shape = (batch, G, H, self.d_state)
        per_chunk = batch * dim * self.d_state * T
        k = max(1, SLAB_ELEMS // per_chunk)
        self.slabs = [(c0, min(c0 + k, self.nc)) for c0 in range(0, self.nc, k)]
        # Reused by every slab: fresh multi-MB tensors per slab would page-fault on first touch.
        most = min(k, self.nc) * per_chunk
        self._ws = [x.u.new_empty(most + most // T, dtype=torch.float32) for _ in range(3)]

    def workspace(self, i: int, shape: tuple[int, ...]) -> Tensor:
        n = 1
        for s in shape:
            n *= s
        return self._ws[i][:n].view(shape)

    def decays(self, s: _Slab) -> Tensor:
        """a[t] = exp(dt_t * A) for every step of the slab (<= 1 for dt >= 0, A <= 0), in workspace 0."""
        return torch.mul(s.dt.unsqueeze(-1), self.A, out=self.workspace(0, s.shape)).exp_()

    def chunk_decay(self, s: _Slab) -> Tensor:
        """Product of a over each chunk, as exp(A * sum of the chunk's own dt)."""
        return (s.dt.sum(0).unsqueeze(-1) * self.A).exp_()

    def states(self, s: _Slab, a: Tensor, start: Tensor) -> Tensor:
        """hs[0] = start, hs[t + 1] = a[t] * hs[t] + dt u B: every state of every chunk in the slab (workspace 1)."""
        hs = self.workspace(1, (s.shape[0] + 1, *s.shape[1:]))
        hs[0] = start
        for t in range(self.T):
            torch.mul(a[t], hs[t], out=hs[t + 1]).addcmul_(s.du[t, ..., None], s.B[t])
        return hs


def _local_ends(scan: _Scan, s: _Slab, a: Tensor) -> Tensor:
    """State at each chunk's last step when the chunk starts from zero (batch, G, k, H, N)."""
    h = torch.zeros_like(a[0])
    for t in range(scan.T):
        h.mul_(a[t]).addcmul_(s.du[t, ..., None], s.B[t])
    return h


def _local_adjoints(scan: _Scan, s: _Slab, a: Tensor, gy: Tensor) -> Tensor:
    """a_start * dL/dh_start of each chunk, counting only the chunk's own outputs (batch, G, k, H, N)."""
    e = torch.zeros_like(a[0])
    for t in reversed(range(scan.T)):
        e.addcmul_(gy[t, ..., None], s.C[t]).mul_(a[t])
    return e


def _forward(scan: _Scan, out: Tensor) -> tuple[Tensor, Tensor]:
    """Fill out (batch, D, L); return the state at every chunk start (batch, G, nc, H, N) and the final state."""
    batch, G, H, N = scan.state_shape
    starts = scan.A.new_empty(batch, G, scan.nc, H, N)
    h = scan.A.new_zeros(batch, G, H, N)
    z = scan.x.z
    Df = scan.x.channelwise(scan.x.D) if scan.x.D is not None else None
    for c0, c1 in scan.slabs:
        s = _Slab(scan, c0, c1)
        a = scan.decays(s)
        if s.k > 1:
            local, decay = _local_ends(scan, s, a), scan.chunk_decay(s)
            for j in range(s.k):
                starts[:, :, c0 + j] = h
                h = decay[:, :, j] * h + local[:, :, j]
        else:
            starts[:, :, c0] = h
        hs = scan.states(s, a, starts[:, :, c0:c1])
        h = hs[-1, :, :, -1].clone()  # hs lives in a workspace that the next slab overwrites
        # Elementwise C . h, not a matmul, so torch.utils.flop_counter sees this scan as it sees ref (archs
        # accounting adds the scan's FLOPs analytically).
        y = s.flat(torch.mul(hs[1:], s.C, out=a).sum(-1))
        if Df is not None:
            y.addcmul_(s.u_flat, Df)
        if z is not None:
            y.mul_(F.silu(z[..., s.t0 : s.t1].float()))
        out[..., s.t0 : s.t1] = y
    return starts, h


def _backward(scan: _Scan, starts: Tensor, gout: Tensor | None, glast: Tensor | None, grads: dict) -> None:
    """Slabs from last to first: recompute states, run the adjoint, write every input's gradient into grads."""
    z = scan.x.z
    Df = scan.x.channelwise(scan.x.D) if scan.x.D is not None else None
    dim = scan.A.shape[0] * scan.A.shape[2]
    dA = torch.zeros_like(scan.A[:, 0])
    dD = scan.A.new_zeros(dim) if Df is not None else None
    dbias = scan.A.new_zeros(dim) if scan.x.delta_bias is not None else None
    # e: dL/dh reaching the slab's last state from every later step.
    e = scan.A.new_zeros(scan.state_shape) if glast is None else glast.float().reshape(scan.state_shape).clone()
    for c0, c1 in reversed(scan.slabs):
        s = _Slab(scan, c0, c1)
        span = slice(s.t0, s.t1)
        g_out = gout[..., span].float() if gout is not None else s.u_flat.new_zeros(s.u_flat.shape)
        gy_flat = g_out
        if z is not None:
            zf = z[..., span].float()
            sig = torch.sigmoid(zf)
            gy_flat = g_out * zf * sig
        pad = s.k * scan.T - s.n
        gy = _steps(F.pad(gy_flat, (0, pad)) if pad else gy_flat, scan.groups, scan.T)

        a = scan.decays(s)
        hs = scan.states(s, a, starts[:, :, c0:c1])
        ends = torch.empty_like(hs[0])
        if s.k > 1:
            local, decay = _local_adjoints(scan, s, a, gy), scan.chunk_decay(s)
            for j in reversed(range(s.k)):
                ends[:, :, j] = e
                e = decay[:, :, j] * e + local[:, :, j]
        else:
            ends[:, :, 0] = e
        g = scan.workspace(2, s.shape)
        e_run = ends
        for t in reversed(range(scan.T)):
            torch.addcmul(e_run, gy[t, ..., None], s.C[t], out=g[t])
            e_run = torch.mul(a[t], g[t], out=ends)
        if s.k == 1:
            e = e_run[:, :, 0].clone()

        h = hs[1:]
        grads["C"][..., span] = _bc_unsteps(torch.matmul(gy.unsqueeze(-2), h))[..., : s.n]
        grads["B"][..., span] = _bc_unsteps(torch.matmul(s.du.unsqueeze(-2), g))[..., : s.n]
        gB = torch.matmul(g, s.B.transpose(-1, -2)).squeeze(-1)
        if z is not None:
            y = s.flat(torch.matmul(h, s.C.transpose(-1, -2)).squeeze(-1))
            if Df is not None:
                y.addcmul_(s.u_flat, Df)
            y.mul_(g_out).mul_(sig)
            dsilu_over_sig = sig.neg_().add_(1).mul_(zf).add_(1)  # d silu(z)/dz = sig * (1 + z * (1 - sig))
            grads["z"][..., span] = y.mul_(dsilu_over_sig)
        # q = dL/d(dt*A) per step and state: the adjoint times the decayed previous state.
        q = a.mul_(g).mul_(hs[:-1])
        ddt = torch.linalg.vecdot(q, scan.A).addcmul_(s.u, gB)
        dA += q.mul_(s.dt.unsqueeze(-1)).sum((0, 1, 3))
        du = s.flat(gB.mul_(s.dt))
        if Df is not None:
            du.addcmul_(gy_flat, Df)
            dD += (gy_flat * s.u_flat).sum((0, 2))
        grads["u"][..., span] = du
        ddt = s.flat(ddt)
        if s.dt_raw is not None:
            ddt.mul_(torch.sigmoid(s.dt_raw))
        if dbias is not None:
            dbias += ddt.sum((0, 2))
        grads["delta"][..., span] = ddt
    grads["A"] = dA.reshape(-1, scan.d_state)
    grads["D"], grads["delta_bias"] = dD, dbias


class _SelectiveScanTorch(torch.autograd.Function):
    @staticmethod
    def forward(ctx, chunk, *fields):  # fields: ScanInputs' own, each tensor its own argument for autograd
        x = ScanInputs(*fields)
        scan = _Scan(x, chunk)
        out = torch.empty_like(x.u, memory_format=torch.contiguous_format)
        with torch.autocast(x.u.device.type, enabled=False):  # fp32 state and discretisation, whatever autocast says
            starts, last = _forward(scan, out)
        ctx.save_for_backward(*x.tensors, starts)
        ctx.delta_softplus, ctx.chunk = x.delta_softplus, chunk
        ctx.set_materialize_grads(False)
        batch, dim, _ = x.u.shape
        # A fresh tensor, not a view of an internal one: callers (Mamba decode) update the state in place.
        return out, last.reshape(batch, dim, x.A.shape[1]).clone()

    @staticmethod
    def backward(ctx, gout, glast):
        *tensors, starts = ctx.saved_tensors
        x = ScanInputs(*tensors, ctx.delta_softplus)
        scan = _Scan(x, ctx.chunk)
        grads = {
            "u": torch.empty_like(x.u, memory_format=torch.contiguous_format),
            "delta": torch.empty_like(x.delta, memory_format=torch.contiguous_format),
            "z": torch.empty_like(x.z, memory_format=torch.contiguous_format) if x.z is not None else None,
            "B": scan.B.new_empty(scan.B.shape, dtype=torch.float32),
            "C": scan.C.new_empty(scan.C.shape, dtype=torch.float32),
        }
        with torch.autocast(x.u.device.type, enabled=False):  # a backward run under autocast would matmul in bf16
            _backward(scan, starts, gout, glast, grads)
        return None, *x.gradients(*(grads[name] for name in ScanInputs._fields[:8]))


def selective_scan_torch(x: ScanInputs, chunk: int = CHUNK) -> Tensor | tuple[Tensor, Tensor]:
    """Chunked parallel selective scan (fp32 state, output in u's dtype); differentiable, last state included."""
    if x.u.shape[-1] == 0:
        return selective_scan_ref(x)
    return x.output(*_SelectiveScanTorch.apply(chunk, *x))
