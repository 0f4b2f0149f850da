"""How the hot loops compute: selective scan backends, Mamba's causal conv, gated linear attention and the delta rule,
Mamba-2's SSD."""

from .conv import CONV_BACKENDS, causal_conv1d, causal_conv1d_step, resolve_conv_backend
from .delta_rule import delta_rule, delta_rule_reference, delta_rule_step
from .dispatch import BACKENDS, available_backends, resolve_backend, selective_scan
from .fla_backend import RECURRENCE_BACKENDS, resolve_recurrence_backend
from .gated_linear_attention import gated_linear_attention, gla_reference, gla_step
from .scan_inputs import ScanInputs
from .scan_ref import selective_scan_ref
from .ssd import SSD_BACKENDS, resolve_ssd_backend, ssd, ssd_step
from .state_update import selective_state_update

__all__ = [
    "BACKENDS",
    "CONV_BACKENDS",
    "RECURRENCE_BACKENDS",
    "SSD_BACKENDS",
    "ScanInputs",
    "causal_conv1d",
    "causal_conv1d_step",
    "resolve_conv_backend",
    "available_backends",
    "delta_rule",
    "delta_rule_reference",
    "delta_rule_step",
    "gated_linear_attention",
    "gla_reference",
    "gla_step",
    "resolve_backend",
    "resolve_recurrence_backend",
    "resolve_ssd_backend",
    "selective_scan",
    "selective_scan_ref",
    "selective_state_update",
    "ssd",
    "ssd_step",
]
