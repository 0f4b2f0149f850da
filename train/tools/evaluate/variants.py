"""Ways of evaluating one checkpoint with no retraining: a RoPE scaling and/or a decode-time KV-cache policy."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from seqmix.archs import LanguageModel
from seqmix.archs.rope import RopeScaling, set_rope_scaling


@dataclass(frozen=True)
class Variant:
    """A RoPE scaling (None: leave the model's as trained) and a KV policy spec (None: score the parallel forward)."""

    rope: RopeScaling | None = None
    kv_policy: str | None = None

    @property
    def suffix(self) -> str:
        """What this variant adds to a checkpoint's label, e.g. ' rope=yarn x8 kv=window:64'."""
        parts = []
        if self.rope is not None:
            parts.append("rope=none" if self.rope.method == "none" else f"rope={self.rope.method} x{self.rope.factor:g}")
        if self.kv_policy is not None:
            parts.append(f"kv={self.kv_policy}")
        return "".join(f" {p}" for p in parts)

    @property
    def policy_kind(self) -> str | None:
        """The policy's family without its budget ('window', 'sinks', 'heavy_hitters', ...), None without a policy."""
        return None if self.kv_policy is None else self.kv_policy.split(":")[0]

    def apply(self, model: LanguageModel) -> bool:
        """Set this variant on the model (ValueError if it cannot take it); whether the KV policy applies to it."""
        if self.rope is not None:
            set_rope_scaling(model, self.rope)
        if self.kv_policy is None or not takes_kv_policy(model):
            return False
        from seqmix.archs.kv_policy import set_kv_policy

        set_kv_policy(model, self.kv_policy)
        return True


def takes_kv_policy(model: LanguageModel) -> bool:
    """Whether any layer is of the attention family (holds a KV cache a policy can prune)."""
    return any(hasattr(m, "kv_policy") for m in model.mixers)


def rope_scalings(
    methods: Sequence[str] | None, factor: float | None, train_len: int, max_len: int
) -> list[RopeScaling | None]:
    """One RopeScaling per method (factor default: max_len / train_len, at least 1); [None] when no method is given."""
    if not methods:
        if factor is not None:
            raise ValueError(f"--rope-factor {factor:g} needs --rope-scaling (one or more of pi, ntk, yarn, none)")
        return [None]
    factor = max(1.0, max_len / train_len) if factor is None else factor
    return [RopeScaling(method=m, factor=factor, original_max_len=train_len) for m in methods]


def check_kv_policies(specs: Sequence[str] | None) -> list[str | None]:
    """The policy specs, each parsed once so that a bad one fails here; [None] when none is given."""
    if not specs:
        return [None]
    from seqmix.archs.kv_policy import parse_kv_policy

    for spec in specs:
        parse_kv_policy(spec)
    return list(specs)


def variants(rope: Sequence[RopeScaling | None], kv_policies: Sequence[str | None]) -> list[Variant]:
    """Every combination of a RoPE scaling and a KV policy, in order."""
    return [Variant(r, k) for r, k in itertools.product(rope, kv_policies)]


__all__ = ["Variant", "check_kv_policies", "rope_scalings", "takes_kv_policy", "variants"]
