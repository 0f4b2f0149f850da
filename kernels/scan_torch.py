"""Chunked selective scan in plain PyTorch: parallel over L, fast on CPU, with a memory-lean custom backward.

Why chunked sequential-in-chunk rather than log-space or Blelloch: Mamba-1's decay exp(delta_t * A) differs per
(channel, state), so a log-space closed form needs exp of positive cumulative sums (overflows for large
delta*|A|) or a (T x T x N) kernel per channel (T times the work). Instead L is cut into `nc` chunks of `T`
steps and all chunks advance together: a Python loop of T steps over (batch, G, nc, H, N) tensors, then a short
loop over chunks to carry boundary states. Work stays O(B D L N) (Blelloch would add a log factor and a
Hillis-Steele scan log L full passes), every exponent is delta*A <= 0 (the chunk decay uses the chunk's own sum
of delta, never a difference of long cumulative sums), and the backward saves only the chunk-start states
(B, D, L/T, N), recomputing the in-chunk states slab by slab.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .validate import as_grouped, groups_of

CHUNK = 32
# Cap, in fp32 elements, on the (T, batch, G, k, H, N) buffers of one slab of k chunks: bounds memory at any L
# and keeps the step loops in cache instead of DRAM.
SLAB_ELEMS = 1 << 19


def _steps(x: Tensor, groups: int, T: int) -> Tensor:
    """(batch, dim, nc*T) -> (T, batch, G, nc, H) contiguous, so one step of every chunk is one block."""
    b, d, lp = x.shape
    return x.reshape(b, groups, d // groups, lp // T, T).permute(4, 0, 1, 3, 2).contiguous()


def _unsteps(x: Tensor) -> Tensor:
    """(T, batch, G, nc, H) -> (batch, G*H, nc*T)."""
    T, b, g, nc, h = x.shape
    return x.permute(1, 2, 4, 3, 0).reshape(b, g * h, nc * T)


def _bc_steps(M: Tensor, T: int) -> Tensor:
    """(batch, G, N, nc*T) -> (T, batch, G, nc, 1, N) contiguous."""
    b, g, n, lp = M.shape
    return M.reshape(b, g, n, lp // T, T).permute(4, 0, 1, 3, 2).unsqueeze(-2).contiguous()


def _bc_unsteps(x: Tensor) -> Tensor:
    """(T, batch, G, nc, 1, N) -> (batch, G, N, nc*T)."""
    T, b, g, nc, _, n = x.shape
    return x.squeeze(-2).permute(1, 2, 4, 3, 0).reshape(b, g, n, nc * T)


def _slabs(nc: int, per_chunk: int) -> list[tuple[int, int]]:
    """Split chunk indices [0, nc) into consecutive ranges of about SLAB_ELEMS // per_chunk chunks (at least one)."""
    k = max(1, SLAB_ELEMS // max(per_chunk, 1))
    return [(c0, min(c0 + k, nc)) for c0 in range(0, nc, k)]


class _Prepared:
    """Inputs cast to fp32, delta discretised, padded to whole chunks and laid out step-major."""

    def __init__(self, u, delta, A, B, C, delta_bias, delta_softplus, chunk):
        batch, dim, length = u.shape
        self.length, self.groups, self.d_state = length, groups_of(B, C), A.shape[1]
        self.T = T = max(1, min(chunk, length))
        pad = (-length) % T
        self.nc = (length + pad) // T
        G, H = self.groups, dim // self.groups
        dt_raw = delta.float()
        if delta_bias is not None:
            dt_raw = dt_raw + delta_bias.float()[:, None]
        self.dt_raw = dt_raw
        dt = F.softplus(dt_raw) if delta_softplus else dt_raw
        # Padded steps have dt = 0 and no input: decay 1, so states pass through them unchanged.
        self.dt = _steps(F.pad(dt, (0, pad)), G, T)
        self.u = _steps(F.pad(u.float(), (0, pad)), G, T)
        self.du = self.dt * self.u
        self.B = _bc_steps(F.pad(as_grouped(B, G).float(), (0, pad)), T)
        self.C = _bc_steps(F.pad(as_grouped(C, G).float(), (0, pad)), T)
        self.A = A.float().reshape(G, 1, H, self.d_state)
        self.per_chunk = batch * dim * self.d_state * T
        self.slabs = _slabs(self.nc, self.per_chunk)
        # Workspaces reused by every slab: fresh multi-MB tensors per slab would page-fault on first touch.
        most = max(c1 - c0 for c0, c1 in self.slabs) * self.per_chunk
        self._ws = [self.dt.new_empty(most + most // T) for _ in range(3)]

    def slab(self, c0: int, c1: int) -> tuple[tuple[slice, ...], tuple[int, ...]]:
        """Index into step-layout tensors for chunks [c0, c1), and the (T, batch, G, k, H, N) buffer shape."""
        _, b, g, _, h = self.dt.shape
        return (slice(None),) * 3 + (slice(c0, c1),), (self.T, b, g, c1 - c0, h, self.d_state)

    def workspace(self, i: int, shape: tuple[int, ...]) -> Tensor:
        n = 1
        for s in shape:
            n *= s
        return self._ws[i][:n].view(shape)

    def decays(self, sl: tuple[slice, ...], a: Tensor) -> Tensor:
        """a[t] for every step of slab `sl`, written into workspace 0: exp(dt * A) <= 1 for dt >= 0, A <= 0."""
        dt = self.dt[sl]
        return torch.mul(dt.unsqueeze(-1), self.A, out=a).exp_()

    def chunk_decay(self, sl: tuple[slice, ...]) -> Tensor:
        """Product of a over each chunk, as exp(A * sum of the chunk's own dt): no long cumulative differences."""
        return (self.dt[sl].sum(0).unsqueeze(-1) * self.A).exp_()

    def states(self, sl: tuple[slice, ...], a: Tensor, start: Tensor, out: Tensor) -> Tensor:
        """out[0] = start, out[t + 1] = a[t] * out[t] + dt u B: every state of every chunk in the slab."""
        du, B = self.du[sl], self.B[sl]
        out[0] = start
        for t in range(self.T):
            torch.mul(a[t], out[t], out=out[t + 1]).addcmul_(du[t, ..., None], B[t])
        return out


def _local_ends(p: _Prepared, sl: tuple[slice, ...], a: Tensor) -> Tensor:
    """State at each chunk's last step when the chunk starts from zero (b, G, k, H, N)."""
    du, B = p.du[sl], p.B[sl]
    h = torch.zeros_like(a[0])
    for t in range(p.T):
        h.mul_(a[t]).addcmul_(du[t, ..., None], B[t])
    return h


def _local_adjoints(p: _Prepared, sl: tuple[slice, ...], a: Tensor, gy: Tensor) -> Tensor:
    """a_start * dL/dh_start of each chunk counting only the chunk's own outputs (b, G, k, H, N)."""
    C = p.C[sl]
    e = torch.zeros_like(a[0])
    for t in reversed(range(p.T)):
        e.addcmul_(gy[t, ..., None], C[t]).mul_(a[t])
    return e


def _scan_forward(p: _Prepared) -> tuple[Tensor, Tensor, Tensor]:
    """y (step layout), the state at every chunk start (b, G, nc, H, N) and the final state (b, G, H, N)."""
    y = torch.empty_like(p.dt)
    _, b, G, nc, H = p.dt.shape
    starts = p.dt.new_empty(b, G, nc, H, p.d_state)
    s = p.dt.new_zeros(b, G, H, p.d_state)
    for c0, c1 in p.slabs:
        sl, shape = p.slab(c0, c1)
        a = p.decays(sl, p.workspace(0, shape))
        if c1 - c0 > 1:
            local, decay = _local_ends(p, sl, a), p.chunk_decay(sl)
            for j in range(c1 - c0):
                starts[:, :, c0 + j] = s
                s = decay[:, :, j] * s + local[:, :, j]
        else:
            starts[:, :, c0] = s
        hs = p.states(sl, a, starts[:, :, c0:c1], p.workspace(1, (shape[0] + 1, *shape[1:])))
        s = hs[-1, :, :, -1].clone()
        y[sl] = torch.matmul(hs[1:], p.C[sl].transpose(-1, -2)).squeeze(-1)
    return y, starts, s


def _scan_backward(p: _Prepared, starts: Tensor, gy: Tensor, last_grad: Tensor | None):
    """Slabs from last to first: recompute states, run the adjoint, reduce to gradients (step layout)."""
    ddt, du_scan, y = torch.empty_like(p.dt), torch.empty_like(p.dt), torch.empty_like(p.dt)
    dB, dC = torch.empty_like(p.B), torch.empty_like(p.C)
    dA = torch.zeros_like(p.A[:, 0])
    # e: dL/dh arriving at the slab's last state from everything after it.
    e = torch.zeros_like(starts[:, :, 0]) if last_grad is None else last_grad.clone()
    for c0, c1 in reversed(p.slabs):
        sl, shape = p.slab(c0, c1)
        dt, du, gys, Bs, Cs = p.dt[sl], p.du[sl], gy[sl], p.B[sl], p.C[sl]
        a = p.decays(sl, p.workspace(0, shape))
        hs = p.states(sl, a, starts[:, :, c0:c1], p.workspace(1, (shape[0] + 1, *shape[1:])))
        ends = torch.empty_like(hs[0])
        if c1 - c0 > 1:
            local, decay = _local_adjoints(p, sl, a, gys), p.chunk_decay(sl)
            for j in reversed(range(c1 - c0)):
                ends[:, :, j] = e
                e = decay[:, :, j] * e + local[:, :, j]
        else:
            ends[:, :, 0] = e
        g = p.workspace(2, shape)
        e_run = ends
        for t in reversed(range(p.T)):
            torch.addcmul(e_run, gys[t, ..., None], Cs[t], out=g[t])
            e_run = torch.mul(a[t], g[t], out=ends)
        if c1 - c0 == 1:
            e = e_run[:, :, 0]
        h = hs[1:]
        y[sl] = torch.matmul(h, Cs.transpose(-1, -2)).squeeze(-1)
        dC[sl] = torch.matmul(gys.unsqueeze(-2), h)
        dB[sl] = torch.matmul(du.unsqueeze(-2), g)
        gB = torch.matmul(g, Bs.transpose(-1, -2)).squeeze(-1)
        # q = dL/d(dt*A) per step and state: the adjoint times the decayed previous state.
        q = a.mul_(g).mul_(hs[:-1])
        ddt[sl] = torch.linalg.vecdot(q, p.A).addcmul_(p.u[sl], gB)
        dA += q.mul_(dt.unsqueeze(-1)).sum((0, 1, 3))
        du_scan[sl] = dt * gB
    return y, ddt, du_scan, dA, dB, dC


class _SelectiveScanTorch(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk):
        p = _Prepared(u, delta, A, B, C, delta_bias, delta_softplus, chunk)
        y, starts, last = _scan_forward(p)
        y = _unsteps(y)[..., : p.length]
        if D is not None:
            y = y + u.float() * D.float()[:, None]
        out = y * F.silu(z.float()) if z is not None else y
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, starts)
        ctx.delta_softplus, ctx.chunk = delta_softplus, chunk
        ctx.set_materialize_grads(False)
        batch, dim, _ = u.shape
        return out.to(u.dtype), last.reshape(batch, dim, A.shape[1])

    @staticmethod
    def backward(ctx, gout, glast):
        u, delta, A, B, C, D, z, delta_bias, starts = ctx.saved_tensors
        p = _Prepared(u, delta, A, B, C, delta_bias, ctx.delta_softplus, ctx.chunk)
        batch, dim, length = u.shape
        G, H, N = p.groups, dim // p.groups, p.d_state
        gout = u.new_zeros(u.shape, dtype=torch.float32) if gout is None else gout.float()
        if glast is not None:
            glast = glast.float().reshape(batch, G, H, N)
        gy = gout * F.silu(z.float()) if z is not None else gout
        pad = p.nc * p.T - length
        gy_steps = _steps(F.pad(gy, (0, pad)), G, p.T)
        y_s, ddt_s, du_s, dA, dB_s, dC_s = _scan_backward(p, starts, gy_steps, glast)
        uf = u.float()
        du = _unsteps(du_s)[..., :length]
        ddt = _unsteps(ddt_s)[..., :length]
        dD = dz = None
        y = _unsteps(y_s)[..., :length]
        if D is not None:
            du = du + gy * D.float()[:, None]
            dD = (gy * uf).sum((0, 2)).to(D.dtype)
            y = y + uf * D.float()[:, None]
        if z is not None:
            zf = z.float()
            sig = torch.sigmoid(zf)
            dz = (gout * y * sig * (1 + zf * (1 - sig))).to(z.dtype)
        if ctx.delta_softplus:
            ddt = ddt * torch.sigmoid(p.dt_raw)
        ddelta_bias = ddt.sum((0, 2)).to(delta_bias.dtype) if delta_bias is not None else None
        dB = _bc_unsteps(dB_s)[..., :length]
        dC = _bc_unsteps(dC_s)[..., :length]
        dB = dB.sum(1) if B.dim() == 3 else dB
        dC = dC.sum(1) if C.dim() == 3 else dC
        return (
            du.to(u.dtype),
            ddt.to(delta.dtype),
            dA.reshape(dim, N).to(A.dtype),
            dB.to(B.dtype),
            dC.to(C.dtype),
            dD,
            dz,
            ddelta_bias,
            None,
            None,
        )


def selective_scan_torch(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    chunk: int = CHUNK,
) -> Tensor | tuple[Tensor, Tensor]:
    """Chunked parallel selective scan (fp32 state, output in u's dtype); differentiable, last state included."""
    if u.shape[-1] == 0:
        from .scan_ref import selective_scan_ref

        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    out, last = _SelectiveScanTorch.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk)
    return (out, last) if return_last_state else out
