"""How the hot loops compute: selective scan backends, Mamba's causal conv, chunked linear attention."""

from .conv import CONV_BACKENDS, causal_conv1d, causal_conv1d_step, resolve_conv_backend
from .dispatch import BACKENDS, available_backends, resolve_backend, selective_scan
from .scan_ref import selective_scan_ref
from .state_update import selective_state_update

__all__ = [
    "BACKENDS",
    "CONV_BACKENDS",
    "causal_conv1d",
    "causal_conv1d_step",
    "resolve_conv_backend",
    "available_backends",
    "resolve_backend",
    "selective_scan",
    "selective_scan_ref",
    "selective_state_update",
]
