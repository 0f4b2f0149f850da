"""`seqmix evaluate`: sweep trained checkpoints over context length (x needle depth) on fresh examples of their task.

Writes to --out: `extrapolation.csv` / `extrapolation.png` (accuracy against context length, one line per checkpoint
and variant, the training length marked) and, for tasks with a depth (needle, multi_needle, induction), `heatmap.csv` /
`heatmap[_<label>].png` (context length x depth), plus `summary.json` (what was run). CSVs are tidy: one row per
(model, length[, depth]) with accuracy (over answer tokens), exact_match (over examples), n_examples and n_tokens.

Variants, with no retraining: `--rope-scaling none pi ntk yarn --rope-factor F` evaluates a RoPE checkpoint once per
method; `--kv-policy full window:W ...` decodes attention under each KV-cache policy (prefill `--prefill-len` tokens,
step the rest, score the step logits); `--recall-vs-state` also writes `recall_vs_state.csv` / `.png`, accuracy
against the decode-state bytes per sequence at each length.

Modules: `tasks` (checkpoints and the tasks they were trained on), `grid` (scoring, the length x depth sweep),
`variants` (RoPE scalings x KV policies), `plots`, `cli` (the command line).
"""

from .cli import Plan, build_parser, evaluate_cli, main, plan, run
from .grid import decode_logits, length_curve, score, sweep, write_csv
from .plots import plot_curve, plot_heatmap, plot_recall_vs_state
from .tasks import (
    DEFAULT_DEPTHS,
    DEFAULT_FACTORS,
    DEPTH_LABELS,
    TASKS,
    Task,
    build_task,
    eval_generator,
    infer_task,
    load_checkpoint,
)
from .variants import Variant, check_kv_policies, rope_scalings, variants

__all__ = [
    "DEFAULT_DEPTHS", "DEFAULT_FACTORS", "DEPTH_LABELS", "TASKS", "Plan", "Task", "Variant", "build_parser", "build_task",
    "check_kv_policies", "decode_logits", "eval_generator", "evaluate_cli", "infer_task", "length_curve",
    "load_checkpoint", "main", "plan", "plot_curve", "plot_heatmap", "plot_recall_vs_state", "rope_scalings", "run",
    "score", "sweep", "variants", "write_csv",
]
