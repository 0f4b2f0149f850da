"""The Mamba-1 block (Gu & Dao 2023): gated selective state-space model with a short causal convolution.

`selective=False` is the Mamba paper's selectivity ablation (its Table 1 "S4" layer inside the Mamba block, and the
ablations of its section 4.6 / Table 7): Δ, B and C become learned input-independent parameters, so the SSM is linear
time-invariant like S4D, while the rest of the block (conv, gate, projections) stays as it is."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqmix import kernels

from .mixer import Mixer, State, positive_int, register


@register
class Mamba(Mixer):
    """Mamba-1: in_proj -> causal depthwise conv -> SiLU -> selective scan (+D skip) -> * SiLU(z) -> out_proj."""

    name = "mamba"

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        scan_backend: str = "auto",
        conv_backend: str = "auto",
        selective: bool = True,
    ):
        super().__init__()
        for field, value in (("d_model", d_model), ("d_state", d_state), ("d_conv", d_conv), ("expand", expand)):
            positive_int(field, value)
        if dt_rank is not None:
            positive_int("dt_rank", dt_rank)
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"mamba: need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        if scan_backend not in kernels.BACKENDS:
            raise ValueError(f"mamba: unknown scan_backend {scan_backend!r}; choose one of {', '.join(kernels.BACKENDS)}")
        if conv_backend not in kernels.CONV_BACKENDS:
            choices = ", ".join(kernels.CONV_BACKENDS)
            raise ValueError(f"mamba: unknown conv_backend {conv_backend!r}; choose one of {choices}")
        if not isinstance(selective, bool):
            raise ValueError(f"mamba: selective must be True or False, got {selective!r}")
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.selective = selective
        self.d_inner = expand * d_model
        self.dt_rank = dt_rank if dt_rank is not None else math.ceil(d_model / 16)
        self.scan_backend, self.conv_backend = scan_backend, conv_backend
        di = self.d_inner

        self.in_proj = nn.Linear(d_model, 2 * di, bias=bias)
        self.conv1d = nn.Conv1d(di, di, d_conv, groups=di, padding=d_conv - 1, bias=conv_bias)
        if selective:
            self.x_proj = nn.Linear(di, self.dt_rank + 2 * d_state, bias=False)
            self.dt_proj = nn.Linear(self.dt_rank, di, bias=True)
            dt_bias = self.dt_proj.bias
        else:
            # LTI: per-channel B and C (like S4D's), B = 1 and C ~ N(0, 1/N) at init; Δ = softplus(dt_bias) alone
            self.B_lti = nn.Parameter(torch.ones(di, d_state))
            self.C_lti = nn.Parameter(torch.randn(di, d_state) * d_state**-0.5)
            self.dt_bias = dt_bias = nn.Parameter(torch.empty(di))
        self.out_proj = nn.Linear(di, d_model, bias=bias)
        if selective:  # after every layer is built, so a seed draws the same weights as before the LTI option
            std = self.dt_rank**-0.5  # dt_proj keeps the variance of dt at init
            nn.init.uniform_(self.dt_proj.weight, -std, std)

        # the dt bias is softplus^-1 of dt ~ LogUniform[dt_min, dt_max]
        dt = torch.exp(torch.rand(di) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        # S4D-real: A = -(1, 2, ..., N) for every channel, stored as log in fp32
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(di, 1))
        self.D = nn.Parameter(torch.ones(di))
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True

    @property
    def delta_bias(self) -> Tensor:
        """The bias added to Δ before its softplus (di,)."""
        return self.dt_proj.bias if self.selective else self.dt_bias

    def _ssm_inputs(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Post-conv activations x (B, di, L) -> delta (B, di, L), A (di, N), B and C (B, N, L), or (B, di, N, L) when
        not selective (one group per channel)."""
        A = -torch.exp(self.A_log.float())
        if not self.selective:
            batch, di, length = x.shape
            delta = x.new_zeros(batch, di, length)  # Δ = softplus(0 + dt_bias): the same at every position
            B = self.B_lti.to(x.dtype)[None, :, :, None].expand(batch, di, self.d_state, length)  # (B, di, N, L)
            C = self.C_lti.to(x.dtype)[None, :, :, None].expand(batch, di, self.d_state, length)
            return delta, A, B, C
        dt, B, C = self.x_proj(x.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = (dt @ self.dt_proj.weight.t()).transpose(1, 2)
        return delta, A, B.transpose(1, 2), C.transpose(1, 2)  # (B, N, L) views: each scan backend lays them out

    def _mix(self, hidden: Tensor, return_state: bool) -> tuple[Tensor, State | None]:
        length = hidden.shape[1]
        xz = self.in_proj(hidden).transpose(1, 2)  # (B, 2 di, L)
        x, z = xz.chunk(2, dim=1)
        conv_window = F.pad(x, (self.d_conv - 1, 0))[..., length:] if return_state else None  # last d_conv-1 inputs
        x = kernels.causal_conv1d(x, self.conv1d.weight[:, 0], self.conv1d.bias, "silu", backend=self.conv_backend)
        delta, A, B, C = self._ssm_inputs(x)
        out = kernels.selective_scan(
            x, delta, A, B, C, self.D.float(), z=z, delta_bias=self.delta_bias.float(),
            delta_softplus=True, return_last_state=return_state, backend=self.scan_backend,
        )
        if not return_state:
            return self.out_proj(out.transpose(1, 2)), None
        y, ssm = out
        # the conv window in the parameters' dtype, like init_state (under autocast x is bf16, the state is not)
        conv = conv_window.to(self.in_proj.weight.dtype).contiguous()
        return self.out_proj(y.transpose(1, 2)), {"conv": conv, "ssm": ssm.float()}

    def forward(self, x: Tensor) -> Tensor:
        return self._mix(x, False)[0]

    def init_state(self, batch: int, max_len: int = 0) -> State:
        w = self.in_proj.weight
        return {
            "conv": w.new_zeros(batch, self.d_inner, self.d_conv - 1),
            "ssm": w.new_zeros(batch, self.d_inner, self.d_state, dtype=torch.float32),
        }

    def prefill(self, x: Tensor, max_len: int | None = None) -> tuple[Tensor, State]:
        if x.shape[1] == 0:
            return x.new_zeros(x.shape), self.init_state(x.shape[0])
        y, state = self._mix(x, True)
        return y, state

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        xi, z = self.in_proj(x).chunk(2, dim=-1)  # (B, di) each
        xc, state["conv"] = kernels.causal_conv1d_step(
            xi, state["conv"], self.conv1d.weight[:, 0], self.conv1d.bias, "silu", backend=self.conv_backend
        )
        delta, A, B, C = self._ssm_inputs(xc[..., None])
        y = kernels.selective_state_update(
            state["ssm"], xc, delta[..., 0], A, B[..., 0], C[..., 0], self.D.float(), z=z,
            delta_bias=self.delta_bias.float(), delta_softplus=True,
        )
        return self.out_proj(y.to(x.dtype)), state

    def param_count(self) -> int:
        d, di, n, r, k = self.d_model, self.d_inner, self.d_state, self.dt_rank, self.d_conv
        bias = self.in_proj.bias is not None
        return (
            d * 2 * di + (2 * di if bias else 0)  # in_proj
            + di * k + (di if self.conv1d.bias is not None else 0)  # depthwise conv
            + (di * (r + 2 * n) + r * di if self.selective else 2 * di * n)  # x_proj and dt_proj.weight, or B and C
            + di  # the dt bias
            + di * n + di  # A_log, D
            + di * d + (d if bias else 0)  # out_proj
        )

    def flops_per_token(self, seq_len: int) -> float:
        d, di, n, r, k = self.d_model, self.d_inner, self.d_state, self.dt_rank, self.d_conv
        projections = di * (r + 2 * n) + r * di if self.selective else 0
        matmuls = 2 * (d * 2 * di + projections + di * d)
        conv = 2 * di * k * (seq_len + k - 1) / max(seq_len, 1)  # the padded conv also computes k-1 discarded outputs
        # per (channel, state): dt*A, exp, dt*B*u (2), the decay-and-add (2), C*h and its sum (2)
        scan = 8 * di * n
        return matmuls + conv + scan

    def state_bytes(self, seq_len: int, batch: int = 1, dtype: torch.dtype = torch.float32) -> int:
        elem = torch.empty((), dtype=dtype).element_size()
        return batch * self.d_inner * ((self.d_conv - 1) * elem + self.d_state * 4)  # the SSM state is fp32
