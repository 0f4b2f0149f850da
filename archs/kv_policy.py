"""KV-cache policies: what an attention-family layer keeps while decoding a trained checkpoint (no retraining).

Spec strings (`parse_kv_policy`):

- ``full``: every key and value (the mixer's own cache, exactly as without a policy).
- ``window:W``: the last W tokens, the current one included (query t sees t - W < j <= t).
- ``sinks:S+W``: StreamingLLM: the first S tokens and the last W (budget S + W).
- ``heavy_hitters:B``: H2O: the B // 2 most recent tokens (at least 1) and, of the older ones, those with the
  largest attention accumulated over all queries so far (per key/value head, summed over the heads that share it);
  total budget B.
- ``pyramid:B``: PyramidKV-style per-layer budgets: heavy hitters in every layer, budgets falling linearly from the
  first layer to the last (the last gets max(1, B // 4)), averaging B per layer.
- a comma list of the above, one per layer (``window:64,window:32,full``).

Semantics: a policy decides which tokens each query sees; prefill runs the prompt as if decoded token by token, so
prefill + step equals step-only decode, and prefill's logits are the policy's logits for every prompt position.
Keys are cached after their rotation, at their original positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .attention import Attention, alibi_slopes
from .mixer import State
from .sliding_window import banded_attention

if TYPE_CHECKING:
    from torch import nn

KINDS = ("full", "window", "sinks", "heavy_hitters")
SPECS = "full, window:W, sinks:S+W, heavy_hitters:B, pyramid:B, or a comma list of per-layer policies"


@dataclass(frozen=True)
class KVPolicy:
    """One layer's KV-cache policy: kind, total budget of kept tokens, sinks, and (heavy hitters) recent tokens."""

    kind: str = "full"
    budget: int | None = None
    n_sinks: int = 0
    recent: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown KV policy kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.kind == "full":
            if self.budget is not None or self.n_sinks or self.recent is not None:
                raise ValueError(f"KV policy 'full' takes no budget, sinks or recent, got {self}")
            return
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 1:
            raise ValueError(f"KV policy {self.kind!r}: the budget must be a positive integer, got {self.budget!r}")
        if isinstance(self.n_sinks, bool) or not isinstance(self.n_sinks, int) or self.n_sinks < 0:
            raise ValueError(f"KV policy {self.kind!r}: n_sinks must be a non-negative integer, got {self.n_sinks!r}")
        if self.kind != "sinks" and self.n_sinks:
            raise ValueError(f"KV policy {self.kind!r} keeps no sinks (use sinks:S+W), got n_sinks={self.n_sinks}")
        if self.budget < self.n_sinks + 1:
            raise ValueError(
                f"KV policy {self.kind!r}: budget {self.budget} is smaller than n_sinks + 1 = {self.n_sinks + 1} "
                "(at least one recent token must fit beside the sinks)"
            )
        if self.recent is not None and (self.kind != "heavy_hitters" or not 1 <= self.recent <= self.budget):
            raise ValueError(f"recent must be in 1..budget={self.budget} and only goes with heavy_hitters, got {self.recent!r}")

    @property
    def n_recent(self) -> int:
        """Heavy hitters: how many of the newest tokens are never evicted (the current one included)."""
        return self.recent if self.recent is not None else max(1, self.budget // 2)

    @property
    def spec(self) -> str:
        """The spec string that parses back to this policy."""
        if self.kind == "full":
            return "full"
        if self.kind == "sinks":
            return f"sinks:{self.n_sinks}+{self.budget - self.n_sinks}"
        if self.kind == "heavy_hitters" and self.recent is not None and self.recent != max(1, self.budget // 2):
            return f"heavy_hitters:{self.budget}/{self.recent}"
        return f"{self.kind}:{self.budget}"

    @property
    def per_head(self) -> bool:
        """Whether each key/value head keeps its own set of tokens (heavy hitters) or all share one (window, sinks)."""
        return self.kind == "heavy_hitters"

    def _native(self, mixer: Attention, method: str, *args):
        """Call the mixer's own (policy-free) cache method: the full policy."""
        saved, mixer.kv_policy = mixer.kv_policy, None
        try:
            return getattr(mixer, method)(*args)
        finally:
            mixer.kv_policy = saved

    def _slots(self, seq_len: int) -> int:
        return min(self.budget, seq_len)

    def state_bytes(self, mixer: Attention, seq_len: int, batch: int = 1, dtype: torch.dtype = torch.float32) -> int:
        """Bytes this policy holds for one layer after seq_len tokens (what its prefill returns holds exactly this)."""
        if self.kind == "full":
            return self._native(mixer, "state_bytes", seq_len, batch, dtype)
        n, elem = self._slots(seq_len), torch.empty((), dtype=dtype).element_size()
        held = 2 * batch * n * mixer.kv_dim * elem + 8  # K, V and the int64 position
        if self.per_head:  # each head's slot positions (int64) and accumulated attention
            score = torch.empty((), dtype=torch.promote_types(dtype, torch.float32)).element_size()
            return held + batch * mixer.n_kv_heads * n * (8 + score)
        return held + n * 8  # one int64 position per slot, shared by every head

    def init_state(self, mixer: Attention, batch: int, max_len: int = 0) -> State:
        """An empty cache with room for min(budget, max_len) tokens."""
        if self.kind == "full":
            return self._native(mixer, "init_state", batch, max_len)
        p, n = mixer.qkv.weight, self._slots(max_len)
        shape = (batch, mixer.n_kv_heads, n, mixer.head_dim)
        state = {"k": p.new_zeros(shape), "v": p.new_zeros(shape), "pos": torch.zeros((), dtype=torch.long, device=p.device)}
        heads = (batch, mixer.n_kv_heads) if self.per_head else ()
        state["kpos"] = torch.full((*heads, n), -1, dtype=torch.long, device=p.device)  # -1: an empty slot
        if self.per_head:
            state["score"] = torch.zeros((*heads, n), dtype=torch.promote_types(p.dtype, torch.float32), device=p.device)
        return state

    def prefill(self, mixer: Attention, x: Tensor, max_len: int | None = None) -> tuple[Tensor, State]:
        """Run a prompt (B, L, D) as if decoded token by token under the policy; outputs (B, L, D) and the cache."""
        if self.kind == "full":
            return self._native(mixer, "prefill", x, max_len)
        b, length, _ = x.shape
        state = self.init_state(mixer, b, max(length, max_len or 0))
        if not length:
            return x.new_zeros(b, 0, mixer.d_model), state
        q, k, v = mixer.project(x)
        if not self.per_head and type(mixer) is Attention:  # window or sinks over full attention: one banded pass
            window = self.budget - self.n_sinks
            slopes = alibi_slopes(mixer.n_heads) if mixer.position == "alibi" else None
            y = banded_attention(q, k, v, window, self.n_sinks, slopes)
            s = min(self.n_sinks, length)
            keep = torch.cat([torch.arange(s), torch.arange(max(s, length - window), length)]).to(x.device)
            n = keep.numel()  # min(length, budget); below the budget slot t holds position t, as decoding leaves it
            state["k"][:, :, :n], state["v"][:, :, :n], state["kpos"][:n] = k[:, :, keep], v[:, :, keep], keep
            state["pos"].fill_(length)
            return mixer.merge(y), state
        ys = [self._advance(mixer, state, q[:, :, t : t + 1], k[:, :, t], v[:, :, t]) for t in range(length)]
        return mixer.merge(torch.cat(ys, dim=2)), state

    def step(self, mixer: Attention, x: Tensor, state: State) -> tuple[Tensor, State]:
        """Advance one token x (B, D) under the policy."""
        if self.kind == "full":
            return self._native(mixer, "step", x, state)
        q, k, v = mixer.project(x[:, None, :], int(state["pos"]))
        y = self._advance(mixer, state, q, k[:, :, 0], v[:, :, 0])
        return mixer.merge(y)[:, 0], state

    def _advance(self, mixer: Attention, state: State, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Insert token t's k, v (B, Hkv, hd), evicting one token if the budget is full; attend q (B, H, 1, hd)."""
        t = int(state["pos"])
        cap = state["k"].shape[2]
        if t < self.budget:  # slots fill in order until the budget is reached; only then does anything leave
            if t >= cap:  # out of room: double the cache, up to the budget
                self._grow(state, min(self.budget, max(2 * cap, 1)))
            slot: int | Tensor = t
        else:
            slot = self._victim(mixer, state, t)
        if isinstance(slot, int):
            state["k"][:, :, slot], state["v"][:, :, slot] = k, v
            state["kpos"][..., slot] = t
            if self.per_head:
                state["score"][..., slot] = 0
        else:  # one slot per (batch, head): (B, Hkv)
            idx = slot[..., None, None].expand(-1, -1, 1, k.shape[-1])
            state["k"].scatter_(2, idx, k[:, :, None])
            state["v"].scatter_(2, idx, v[:, :, None])
            state["kpos"].scatter_(2, slot[..., None], t)
            state["score"].scatter_(2, slot[..., None], 0)
        state["pos"] += 1
        qpos = torch.tensor([t], device=q.device)
        if not self.per_head:
            return mixer.decode_attend(q, state["k"], state["v"], qpos, state["kpos"])
        y, probs = mixer.attend(q, state["k"], state["v"], qpos, state["kpos"])
        # probs (B, Hkv, g, 1, n): what each kept key received from this query, summed over the heads sharing it
        state["score"] += probs.sum(dim=(2, 3)).to(state["score"].dtype)
        return y

    def _grow(self, state: State, n: int) -> None:
        """Widen every per-slot tensor to n slots (new slots empty)."""
        for key, fill in (("k", 0), ("v", 0), ("kpos", -1), ("score", 0)):
            if key in state:
                old = state[key]
                dim = 2 if key in ("k", "v") else old.ndim - 1  # the slot dimension
                shape = list(old.shape)
                shape[dim] = n - old.shape[dim]
                state[key] = torch.cat([old, old.new_full(shape, fill)], dim=dim)

    def _victim(self, mixer: Attention, state: State, t: int) -> int | Tensor:
        """The slot to overwrite at position t once the budget is full."""
        kpos = state["kpos"]
        if not self.per_head:  # the oldest token that is not a sink: a ring over the slots after the sinks
            return int(kpos.masked_fill(kpos < self.n_sinks, torch.iinfo(torch.long).max).argmin())
        old = kpos <= t - self.n_recent  # outside the recent window that token t completes
        # a token the layer itself no longer shows (a sliding window's) goes before any heavy hitter
        score = state["score"].masked_fill(~mixer.visible(t - kpos, kpos), float("-inf"))
        return score.masked_fill(~old, float("inf")).argmin(dim=-1)  # (B, Hkv)


@dataclass(frozen=True)
class KVSchedule:
    """Per-layer KV policies: an explicit list (one per layer), or a PyramidKV-style mean budget resolved by depth."""

    policies: tuple[KVPolicy, ...] = ()
    pyramid_budget: int | None = None

    def for_layers(self, n_layers: int) -> list[KVPolicy]:
        """The policy of each of n_layers layers."""
        if self.pyramid_budget is None:
            if len(self.policies) != n_layers:
                raise ValueError(f"the KV policy list names {len(self.policies)} layers but the model has {n_layers}")
            return list(self.policies)
        return [KVPolicy("heavy_hitters", budget=b) for b in pyramid_budgets(self.pyramid_budget, n_layers)]

    @property
    def spec(self) -> str:
        """The spec string that parses back to this schedule."""
        return f"pyramid:{self.pyramid_budget}" if self.pyramid_budget is not None else ",".join(p.spec for p in self.policies)


def pyramid_budgets(mean: int, n_layers: int) -> list[int]:
    """Budgets falling linearly from the first layer to the last (max(1, mean // 4)), summing to mean * n_layers."""
    if n_layers == 1:
        return [mean]
    last = max(1, mean // 4)
    first = 2 * mean - last
    budgets = [round(first + (last - first) * i / (n_layers - 1)) for i in range(n_layers)]
    budgets[0] += mean * n_layers - sum(budgets)  # rounding leftovers go to the first layer
    return budgets


def _count(spec: str, name: str, text: str, minimum: int = 1) -> int:
    if not text.isdigit() or int(text) < minimum:
        raise ValueError(f"KV policy {spec!r}: {name} must be an integer >= {minimum}, got {text!r}")
    return int(text)


def parse_kv_policy(spec: str) -> KVPolicy | KVSchedule:
    """A policy from its spec string (see the module docstring); a per-layer schedule for pyramid:B and comma lists."""
    if not isinstance(spec, str):
        raise ValueError(f"a KV policy spec is a string ({SPECS}), got {spec!r}")
    text = spec.strip().lower()
    if "," in text:
        parts = [parse_kv_policy(part) for part in text.split(",")]
        if any(isinstance(p, KVSchedule) for p in parts):
            raise ValueError(f"KV policy {spec!r}: a per-layer list holds single-layer policies, not pyramid:B")
        return KVSchedule(policies=tuple(parts))
    kind, _, arg = text.partition(":")
    if kind == "full" and not arg:
        return KVPolicy()
    if kind == "window" and arg:
        return KVPolicy("window", budget=_count(spec, "W", arg))
    if kind == "sinks" and arg:
        sinks, plus, window = arg.partition("+")
        if not plus:
            raise ValueError(f"KV policy {spec!r}: write sinks:S+W (S sink tokens and a window of W)")
        s, w = _count(spec, "S", sinks, 0), _count(spec, "W", window, 0)
        if w < 1:
            raise ValueError(f"KV policy {spec!r}: the budget S+W = {s + w} is smaller than sinks + 1 = {s + 1}")
        return KVPolicy("sinks", budget=s + w, n_sinks=s)
    if kind == "heavy_hitters" and arg:
        budget, slash, recent = arg.partition("/")
        return KVPolicy("heavy_hitters", budget=_count(spec, "B", budget),
                        recent=_count(spec, "the recent count", recent) if slash else None)
    if kind == "pyramid" and arg:
        return KVSchedule(pyramid_budget=_count(spec, "B", arg))
    raise ValueError(f"unknown KV policy {spec!r}; valid: {SPECS}")


def set_kv_policy(model: nn.Module, policy: str | KVPolicy | KVSchedule) -> None:
    """Decode every layer of a LanguageModel (or one mixer) under a KV policy from now on; 'full' restores the cache."""
    if isinstance(policy, str):
        policy = parse_kv_policy(policy)
    if not isinstance(policy, KVPolicy | KVSchedule):
        raise ValueError(f"set_kv_policy takes a spec string, KVPolicy or KVSchedule, got {policy!r}")
    mixers = getattr(model, "mixers", [model])
    for i, mixer in enumerate(mixers):
        if not isinstance(mixer, Attention):
            raise ValueError(
                f"layer {i} ({getattr(mixer, 'name', type(mixer).__name__)}) is not of the attention family; "
                "KV policies apply to attention and sliding_window layers"
            )
    per_layer = policy.for_layers(len(mixers)) if isinstance(policy, KVSchedule) else [policy] * len(mixers)
    for mixer, p in zip(mixers, per_layer, strict=True):
        mixer.kv_policy = None if p.kind == "full" else p
