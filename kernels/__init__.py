"""How the hot loops compute: selective scan backends, gated linear attention and the delta rule."""

from .delta_rule import delta_rule
from .dispatch import BACKENDS, available_backends, resolve_backend, selective_scan
from .gated_linear_attention import gated_linear_attention
from .scan_ref import selective_scan_ref
from .state_update import selective_state_update

__all__ = [
    "BACKENDS",
    "available_backends",
    "delta_rule",
    "gated_linear_attention",
    "resolve_backend",
    "selective_scan",
    "selective_scan_ref",
    "selective_state_update",
]
