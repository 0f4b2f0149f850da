"""The Mamba-2 block (Dao & Gu 2024): SSD, a scalar-decay state-space model per head, on the gated linear-attention kernel."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqmix.kernels import SSD_BACKENDS, ssd, ssd_step
from seqmix.kernels.gated_linear_attention import DEFAULT_CHUNK

from .heads import merge_heads, split_heads
from .mixer import Mixer, State, positive_int, register

MAX_HEADDIM = 64
"""The official head dimension; `headdim=None` takes it whenever it divides the SSM width."""


def default_headdim(d_ssm: int, ngroups: int) -> int:
    """The largest head dimension <= 64 that divides d_ssm into a number of heads divisible by ngroups."""
    for p in range(min(MAX_HEADDIM, d_ssm), 0, -1):
        if d_ssm % p == 0 and (d_ssm // p) % ngroups == 0:
            return p
    raise ValueError(f"mamba2: the SSM width d_ssm={d_ssm} cannot be split into heads divisible by ngroups={ngroups}")


def _range(name: str, value, low_ok: float, strict_low: bool) -> tuple[float, float]:
    """A (lo, hi) pair of numbers with low_ok < lo (or <=) and lo <= hi, else a one-line ValueError."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"mamba2: {name} must be a pair (lo, hi) of numbers, got {value!r}") from None
    bad_low = lo <= low_ok if strict_low else lo < low_ok
    if bad_low or not lo <= hi or math.isnan(hi):
        op = "<" if strict_low else "<="
        raise ValueError(f"mamba2: {name} must satisfy {low_ok:g} {op} lo <= hi, got {value!r}")
    return lo, hi


class GatedRMSNorm(nn.Module):
    """RMSNorm of y gated by SiLU(z), per group of channels; mamba_ssm's RMSNormGated semantics, in fp32."""

    def __init__(self, dim: int, group_size: int, norm_before_gate: bool = False, eps: float = 1e-5):
        super().__init__()
        self.group_size, self.norm_before_gate, self.eps = group_size, norm_before_gate, eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, y: Tensor, z: Tensor) -> Tensor:
        dtype = y.dtype
        y, z = y.float(), z.float()
        if not self.norm_before_gate:
            y = y * F.silu(z)
        groups = y.unflatten(-1, (-1, self.group_size))  # (..., n_groups, group_size)
        y = (groups * torch.rsqrt(groups.square().mean(-1, keepdim=True) + self.eps)).flatten(-2) * self.weight.float()
        if self.norm_before_gate:
            y = y * F.silu(z)
        return y.to(dtype)


@register
class Mamba2(Mixer):
    """Mamba-2: in_proj -> [z | xBC | dt], causal depthwise conv + SiLU on xBC, SSD per head (+D skip),
    gated RMSNorm with z, out_proj; the official `mamba_ssm.modules.mamba2.Mamba2` block (tested against it).

    The SSD runs on `kernels.ssd`, in at least fp32: gated linear attention with q <- C, k <- B (each group's B and
    C shared by its heads), v <- dt * x, log_decay <- dt * A, or on CUDA mamba_ssm's `mamba_chunk_scan_combined`
    (`ssd_backend`: auto, torch, fla, mamba_ssm; see kernels.ssd); decode keeps the last d_conv - 1 conv inputs and
    the (nheads, d_state, headdim) state, advanced by `kernels.ssd_step`.

    Options and defaults are the official ones (d_state=128, expand=2, A_init_range=(1, 16), ...), with one change:
    `headdim=None` (default) means 64, the official value, whenever 64 divides the SSM width, else the largest
    divisor below 64, so that every d_model is a valid width (at d_model=16 the SSM width is 32). Pass headdim to
    fix it; it must then divide d_ssm. `chunk_size` is the SSD's tile (64; the official 256 sizes its Triton tiles).
    The official fused-path and sharding options (use_mem_eff_path, process_group, ...) are not taken: they change
    how the official block computes, not what.
    """

    name = "mamba2"

    def __init__(
        self,
        d_model: int,
        d_state: int = 128,
        d_conv: int = 4,
        conv_init: float | None = None,
        expand: int = 2,
        headdim: int | None = None,
        d_ssm: int | None = None,
        ngroups: int = 1,
        A_init_range: tuple[float, float] = (1.0, 16.0),
        D_has_hdim: bool = False,
        rmsnorm: bool = True,
        norm_before_gate: bool = False,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
        dt_limit: tuple[float, float] = (0.0, float("inf")),
        bias: bool = False,
        conv_bias: bool = True,
        chunk_size: int = DEFAULT_CHUNK,
        ssd_backend: str = "auto",
    ):
        super().__init__()
        for field, value in (("d_model", d_model), ("d_state", d_state), ("d_conv", d_conv), ("expand", expand),
                             ("ngroups", ngroups), ("chunk_size", chunk_size)):
            positive_int(field, value)
        self.d_inner = expand * d_model
        self.d_ssm = self.d_inner if d_ssm is None else positive_int("d_ssm", d_ssm)
        if self.d_ssm > self.d_inner:
            raise ValueError(f"mamba2: d_ssm={d_ssm} exceeds d_inner=expand*d_model={self.d_inner}")
        if headdim is None:
            headdim = default_headdim(self.d_ssm, ngroups)
        elif self.d_ssm % positive_int("headdim", headdim):
            raise ValueError(f"mamba2: headdim={headdim} does not divide d_ssm={self.d_ssm}; pass a divisor or None")
        self.nheads = self.d_ssm // headdim
        if self.nheads % ngroups:
            raise ValueError(f"mamba2: ngroups={ngroups} does not divide nheads={self.nheads} (d_ssm / headdim)")
        if ssd_backend not in SSD_BACKENDS:
            raise ValueError(f"mamba2: unknown ssd_backend {ssd_backend!r}; choose one of {', '.join(SSD_BACKENDS)}")
        if conv_init is not None and not conv_init > 0:
            raise ValueError(f"mamba2: conv_init must be a positive number or None, got {conv_init!r}")
        self.A_init_range = _range("A_init_range", A_init_range, 0.0, strict_low=True)
        self.dt_limit = _range("dt_limit", dt_limit, 0.0, strict_low=False)
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"mamba2: need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        if not dt_init_floor >= 0:
            raise ValueError(f"mamba2: dt_init_floor must be >= 0, got {dt_init_floor!r}")
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.headdim, self.ngroups, self.D_has_hdim, self.rmsnorm = headdim, ngroups, D_has_hdim, rmsnorm
        self.norm_before_gate, self.chunk_size, self.ssd_backend = norm_before_gate, chunk_size, ssd_backend
        self.d_mlp = self.d_inner - self.d_ssm  # channels that skip the SSM through a SiLU-gated MLP
        self.conv_dim = self.d_ssm + 2 * ngroups * d_state  # x, B and C go through the conv together

        # the official construction order, so that one seed gives the official block's initial weights
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner + 2 * ngroups * d_state + self.nheads, bias=bias)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, d_conv, groups=self.conv_dim, padding=d_conv - 1,
                                bias=conv_bias)
        if conv_init is not None:
            nn.init.uniform_(self.conv1d.weight, -conv_init, conv_init)
        # dt bias: softplus^-1 of dt ~ LogUniform[dt_min, dt_max], one per head
        dt = torch.exp(torch.rand(self.nheads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        # A = -exp(A_log), one scalar per head, |A| ~ Uniform(A_init_range), kept in fp32
        self.A_log = nn.Parameter(torch.empty(self.nheads, dtype=torch.float32).uniform_(*self.A_init_range).log())
        self.D = nn.Parameter(torch.ones(self.d_ssm if D_has_hdim else self.nheads))
        for p in (self.dt_bias, self.A_log, self.D):
            p._seqmix_keep_init = True  # the backbone's init must leave these alone
            p._no_weight_decay = True
        if rmsnorm:
            self.norm = GatedRMSNorm(self.d_ssm, self.d_ssm // ngroups, norm_before_gate)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    # ---- the SSD, shared by the parallel form and the one-token step ----

    def _ssd_inputs(self, xbc: Tensor, dt: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Post-conv xBC (B, L, conv_dim) and raw dt (B, L, H) -> kernels.ssd's x (B, H, L, P), discretised dt
        (B, H, L), A (H,), B and C (B, G, L, N), all in the compute dtype (at least fp32)."""
        dtype = torch.promote_types(xbc.dtype, torch.float32)
        b, length, _ = xbc.shape
        g, n = self.ngroups, self.d_state
        x, B, C = xbc.to(dtype).split([self.d_ssm, g * n, g * n], dim=-1)
        dt = F.softplus(dt.to(dtype) + self.dt_bias.to(dtype))  # (B, L, H)
        if self.dt_limit != (0.0, math.inf):
            dt = dt.clamp(*self.dt_limit)
        B, C = (t.view(b, length, g, n).transpose(1, 2) for t in (B, C))  # (B, G, L, N)
        return split_heads(x, self.nheads), dt.transpose(1, 2), -torch.exp(self.A_log.to(dtype)), B, C

    def _output(self, y: Tensor, x: Tensor, z: Tensor, z0: Tensor, x0: Tensor) -> Tensor:
        """SSD output y and x (B, H, L, P), gate z (B, L, d_ssm), MLP halves (B, L, d_mlp) -> block output (B, L, D)."""
        h, p = y.shape[1], y.shape[3]
        D = self.D.to(y.dtype).view(h, 1, p) if self.D_has_hdim else self.D.to(y.dtype).view(h, 1, 1)
        y = merge_heads(y + D * x).to(z.dtype)  # (B, L, d_ssm)
        y = self.norm(y, z) if self.rmsnorm else y * F.silu(z)
        if self.d_mlp:
            y = torch.cat([F.silu(z0) * x0, y], dim=-1)
        return self.out_proj(y)

    def _split(self, zxbcdt: Tensor) -> list[Tensor]:
        """in_proj output (..., d_in_proj) -> z0, x0 (d_mlp), z (d_ssm), xBC (conv_dim), dt (nheads)."""
        return list(zxbcdt.split([self.d_mlp, self.d_mlp, self.d_ssm, self.conv_dim, self.nheads], dim=-1))

    def _mix(self, u: Tensor, state: State | None) -> tuple[Tensor, State]:
        """Run u (B, L, D) from state (None: empty) and return the outputs and the state after the last token."""
        b, length, _ = u.shape
        z0, x0, z, xbc, dt = self._split(self.in_proj(u))
        window = state["conv"] if state is not None else xbc.new_zeros(b, self.conv_dim, self.d_conv - 1)
        xbc = torch.cat([window.to(xbc.dtype), xbc.transpose(1, 2)], dim=-1)  # (B, conv_dim, d_conv - 1 + L)
        new_window = xbc[..., xbc.shape[-1] - (self.d_conv - 1):]
        w = self.conv1d.weight
        xbc = F.silu(F.conv1d(xbc, w, self.conv1d.bias, groups=self.conv_dim)).transpose(1, 2)  # (B, L, conv_dim)
        x, dt, A, B, C = self._ssd_inputs(xbc, dt)
        ssm = state["ssm"] if state is not None else None
        y, ssm = ssd(x, dt, A, B, C, ssm, self.chunk_size, backend=self.ssd_backend)
        out = self._output(y, x, z, z0, x0)
        return out, {"conv": new_window.to(w.dtype).contiguous(), "ssm": ssm}

    def forward(self, x: Tensor) -> Tensor:
        return self._mix(x, None)[0]

    def init_state(self, batch: int, max_len: int = 0) -> State:
        w = self.in_proj.weight
        ssm_dtype = torch.promote_types(w.dtype, torch.float32)
        return {
            "conv": w.new_zeros(batch, self.conv_dim, self.d_conv - 1),  # the last d_conv - 1 conv inputs
            "ssm": w.new_zeros(batch, self.nheads, self.d_state, self.headdim, dtype=ssm_dtype),  # S: (N, P) per head
        }

    def prefill(self, x: Tensor, max_len: int | None = None) -> tuple[Tensor, State]:
        if x.shape[1] == 0:
            return x.new_zeros(x.shape), self.init_state(x.shape[0])
        return self._mix(x, None)

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        z0, x0, z, xbc, dt = (t[:, None] for t in self._split(self.in_proj(x)))  # (B, 1, .) each
        window = torch.cat([state["conv"], xbc.transpose(1, 2).to(state["conv"].dtype)], dim=-1)  # (B, conv_dim, d_conv)
        state["conv"] = window[..., 1:]
        xbc = (window * self.conv1d.weight[:, 0]).sum(-1)
        if self.conv1d.bias is not None:
            xbc = xbc + self.conv1d.bias
        xh, dt, A, B, C = self._ssd_inputs(F.silu(xbc)[:, None].to(x.dtype), dt)
        y, state["ssm"] = ssd_step(xh[:, :, 0], dt[:, :, 0], A, B[:, :, 0], C[:, :, 0], state["ssm"])
        return self._output(y[:, :, None], xh, z, z0, x0)[:, 0], state

    # ---- accounting ----

    def param_count(self) -> int:
        d, di, h = self.d_model, self.d_inner, self.nheads
        bias = self.in_proj.bias is not None
        d_in_proj = 2 * di + 2 * self.ngroups * self.d_state + h
        return (
            d * d_in_proj + (d_in_proj if bias else 0)  # in_proj
            + self.conv_dim * self.d_conv + (self.conv_dim if self.conv1d.bias is not None else 0)  # depthwise conv
            + 2 * h + (self.d_ssm if self.D_has_hdim else h)  # dt_bias, A_log, D
            + (self.d_ssm if self.rmsnorm else 0)  # gated RMSNorm weight
            + di * d + (d if bias else 0)  # out_proj
        )

    def flops_per_token(self, seq_len: int) -> float:
        d, h, n, p, c = self.d_model, self.nheads, self.d_state, self.headdim, self.chunk_size
        matmuls = 2 * d * (2 * self.d_inner + 2 * self.ngroups * n + h) + 2 * self.d_inner * d  # in_proj, out_proj
        conv = 2 * self.conv_dim * self.d_conv
        # the chunked SSD pads L to whole chunks; per padded token and head: C.B^T scores and scores @ v (2C(N+P)),
        # the chunk's k^T v and q @ incoming state (4NP) as matmuls; the decay factors, D skip and dt * x elementwise
        padded = -(-max(seq_len, 1) // c) * c / max(seq_len, 1)
        ssd = padded * h * (2 * c * (n + p) + 4 * n * p)
        return matmuls + conv + ssd + self.ssd_elementwise_flops(seq_len)

    def ssd_elementwise_flops(self, seq_len: int) -> float:
        """The SSD's per-token elementwise work, which torch's flop counter does not see."""
        h, n, p, c = self.nheads, self.d_state, self.headdim, self.chunk_size
        padded = -(-max(seq_len, 1) // c) * c / max(seq_len, 1)
        return padded * h * (2 * n + 2 * c + 3 * p + 2 * n * p / c)

    def state_bytes(self, seq_len: int, batch: int = 1, dtype: torch.dtype = torch.float32) -> int:
        conv = self.conv_dim * (self.d_conv - 1) * torch.empty((), dtype=dtype).element_size()
        ssm = self.nheads * self.d_state * self.headdim * torch.promote_types(dtype, torch.float32).itemsize
        return batch * (conv + ssm)
