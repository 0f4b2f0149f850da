"""In-context regression checkpoints (train.regression.RegressionTask): loss against the number of context points, and
a trained model beside one step of gradient descent on the same context (von Oswald et al. 2023, section 2).

Tasks are icl_regression's tokens (x_i, y_i) .. then (x_q, 0). One GD step from w = 0 on the context's loss
L(w) = 1/(2N) sum_i (w.x_i - y_i)^2 gives w = eta / N sum_i y_i x_i, hence the prediction y_gd = eta g.x_q with
g = (1/N) sum_i y_i x_i. A model is compared with it on the same tasks through the gap between the two predictions
and the cosine between the two predictors' sensitivities d y / d x_q (the paper's "model cos"); the same numbers for
the model's untrained twin (same configuration, fresh initialisation) are the baseline that shows a match is not
trivial."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ...data import get_task
from ...data.synthetic import seeded_generator
from ...io import atomic_write
from .grid import write_csv
from .plots import plot_context_curve
from .tasks import eval_generator, infer_task

Predictor = Callable[[Tensor], Tensor]
"""Tokens (B, N+1, d+1) -> the predictions at the query, (B,)."""

REGRESSION_HPARAMS = ("d_in", "token_space")
"""Hyperparameters only a RegressionTask saves: a checkpoint holding them is one of in-context regression."""
LM_ONLY = ("task", "depths", "rope_scaling", "rope_factor", "kv_policy", "prefill_len", "recall_vs_state", "max_tokens")
"""`seqmix evaluate` options that concern token tasks only."""
GD_LABEL, BAYES_LABEL = "one GD step (best eta at N)", "Bayes optimal (posterior mean)"
GD_FIT_TASKS = 10_000
"""Fresh tasks the curve's GD step size is fitted on, at each N (the authors' code scans step sizes on 10,000)."""


def is_regression_checkpoint(path: Path) -> bool:
    """Whether a checkpoint is a RegressionTask's (its hyperparameters hold d_in and token_space)."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    hparams = torch.load(path, map_location="cpu", weights_only=False).get("hyper_parameters") or {}
    return all(k in hparams for k in REGRESSION_HPARAMS)


def load(path: Path, device: torch.device) -> tuple[Any, Any]:
    """The trained RegressionTask (eval mode, on device) and its task's data module, rebuilt from the checkpoint."""
    from ...regression import RegressionTask

    task = RegressionTask.load_from_checkpoint(path, map_location=device).eval()
    raw = torch.load(path, map_location="cpu", weights_only=False)
    hparams = dict(raw.get("datamodule_hyper_parameters") or {})
    data = get_task(infer_task(path, hparams))(**{k: v for k, v in hparams.items() if not k.startswith("_")})
    if getattr(data, "token_dim", None) != task.d_in:
        raise ValueError(f"{path}: the task's tokens are {getattr(data, 'token_dim', None)} wide, the model reads "
                         f"{task.d_in}")
    return task, data


def untrained_twin(task: Any, seed: int) -> Any:
    """A fresh task module of the same configuration, initialised from `seed` (eval mode, on the same device)."""
    torch.manual_seed(seed)
    return type(task)(**dict(task.hparams)).to(task.device).eval()


def gd_direction(inputs: Tensor) -> Tensor:
    """Minus the gradient at w = 0 of the context's loss 1/(2N) sum_i (w.x_i - y_i)^2: (1/N) sum_i y_i x_i, (B, d)."""
    x, y = inputs[:, :-1, :-1], inputs[:, :-1, -1]  # (B, N, d), (B, N)
    return torch.einsum("bn,bnd->bd", y, x) / x.shape[1]


def gd_predictor(step_size: float) -> Predictor:
    """One gradient-descent step of size `step_size` from w = 0 on the context, evaluated at the query."""
    return lambda inputs: step_size * (gd_direction(inputs) * inputs[:, -1, :-1]).sum(-1)


def best_step_size(inputs: Tensor, targets: Tensor) -> float:
    """The step size whose one GD step has the least squared error on these tasks (exact: the error is quadratic in
    it, minimised at sum(t p) / sum(p^2) with p the prediction of a unit step)."""
    unit = gd_predictor(1.0)(inputs).double()
    if not float((unit * unit).sum()) > 0:
        raise ValueError("every task's context is uninformative (all y_i x_i = 0): no step size can be fitted")
    return float((unit * targets.double()).sum() / (unit * unit).sum())


def bayes_predictor(noise_std: float) -> Predictor:
    """The posterior mean of y_q under the prior w ~ N(0, I): ridge regression with penalty noise_std^2, and with no
    noise the least-norm interpolant (the limit), in float64."""
    def predict(inputs: Tensor) -> Tensor:
        x, y, q = (t.double() for t in (inputs[:, :-1, :-1], inputs[:, :-1, -1], inputs[:, -1, :-1]))
        if noise_std > 0:
            eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
            w = torch.linalg.solve(x.transpose(1, 2) @ x + noise_std**2 * eye, (x.transpose(1, 2) @ y[..., None]))
        else:
            w = torch.linalg.pinv(x) @ y[..., None]  # (B, d, N) @ (B, N, 1)
        return (w[..., 0] * q).sum(-1).to(inputs.dtype)
    return predict


def model_predictor(task: Any) -> Predictor:
    """A RegressionTask's prediction at the query."""
    return task.predict_query


def sensitivity(predict: Predictor, inputs: Tensor) -> tuple[Tensor, Tensor]:
    """The predictions (B,) and their gradients with respect to the query's x, d y / d x_q (B, d)."""
    inputs = inputs.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        predictions = predict(inputs)
        (grad,) = torch.autograd.grad(predictions.sum(), inputs)  # tasks do not interact: row b is d y_b / d inputs_b
    return predictions.detach(), grad[:, -1, :-1]


def compare(predict: Predictor, reference: Predictor, inputs: Tensor, targets: Tensor, batch_size: int = 1024
            ) -> dict[str, float]:
    """A predictor beside a reference on the same tasks: each one's MSE, the gap between their predictions (mean
    squared and mean absolute, the paper's "preds diff"), and between their sensitivities (mean cosine, the paper's
    "model cos"; mean L2 distance, its "model diff")."""
    sums = dict.fromkeys(("mse", "mse_reference", "gap_mse", "gap_abs", "sensitivity_cosine", "sensitivity_diff"), 0.0)
    for i in range(0, inputs.shape[0], batch_size):
        x, t = inputs[i : i + batch_size], targets[i : i + batch_size]
        (p, s), (r, g) = sensitivity(predict, x), sensitivity(reference, x)
        for key, value in (("mse", (p - t).square()), ("mse_reference", (r - t).square()), ("gap_mse", (p - r).square()),
                           ("gap_abs", (p - r).abs()), ("sensitivity_cosine", F.cosine_similarity(s, g, dim=-1, eps=1e-12)),
                           ("sensitivity_diff", (s - g).norm(dim=-1))):
            sums[key] += float(value.double().sum())
    return {key: value / inputs.shape[0] for key, value in sums.items()}


def mse(predict: Predictor, inputs: Tensor, targets: Tensor, batch_size: int = 1024) -> float:
    """Mean squared error of a predictor over tasks."""
    with torch.no_grad():
        total = sum(float((predict(inputs[i : i + batch_size]) - targets[i : i + batch_size]).double().square().sum())
                    for i in range(0, inputs.shape[0], batch_size))
    return total / inputs.shape[0]


def gd_comparison(label: str, task: Any, data: Any, seed: int, device: torch.device) -> list[dict[str, Any]]:
    """The trained model and its untrained twin against one GD step on the held-out (test) tasks, the step size fitted
    on the training tasks; one row each."""
    data.setup()
    train, test = data.datasets["train"], data.datasets["test"]
    step = best_step_size(train.inputs, train.targets)
    inputs, targets = test.inputs.to(device), test.targets.to(device)
    rows = []
    for weights, model in (("trained", task), ("untrained", untrained_twin(task, seed))):
        numbers = compare(model_predictor(model), gd_predictor(step), inputs, targets)
        rows.append({"model": label, "weights": weights, "num_context": data.num_context, "step_size": step,
                     "n_tasks": inputs.shape[0], "baseline_mse": data.baseline_mse,
                     "gap_ratio": numbers["gap_mse"] / numbers["mse_reference"], **numbers})
    return rows


def context_curve(models: dict[str, Predictor], data: Any, contexts: Sequence[int], num_examples: int, seed: int,
                  device: torch.device) -> list[dict[str, Any]]:
    """MSE on fresh tasks at every number of context points, per model, beside one GD step (its step size fitted at
    that N on GD_FIT_TASKS other fresh tasks) and the Bayes-optimal predictor."""
    rows = []
    for n in contexts:
        batch = data.generate(num_examples, n, generator=eval_generator(seed, n, None))
        fit = data.generate(GD_FIT_TASKS, n, generator=seeded_generator(seed, "gd_step_size", n))
        step = best_step_size(fit["inputs"], fit["targets"])
        inputs, targets = batch["inputs"].to(device), batch["targets"].to(device)
        predictors = {**models, GD_LABEL: gd_predictor(step), BAYES_LABEL: bayes_predictor(data.noise_std)}
        for label, predict in predictors.items():
            error = mse(predict, inputs, targets)
            rows.append({"model": label, "num_context": n, "mse": error, "mse_ratio": error / data.baseline_mse,
                         "step_size": step if label == GD_LABEL else "", "n_examples": num_examples})
    return rows


def run(args: argparse.Namespace, argv: Sequence[str], parser: argparse.ArgumentParser, device: torch.device
        ) -> dict[str, Any]:
    """`seqmix evaluate` on in-context regression checkpoints: context_curve.csv / .png, with --gd-comparison also
    gd_comparison.csv, and summary.json, in args.out."""
    given = [f"--{k.replace('_', '-')}" for k in LM_ONLY if getattr(args, k) != parser.get_default(k)]
    if given:
        raise ValueError(f"{', '.join(given)} concern token tasks; these are in-context regression checkpoints (drop it)")
    if args.num_examples < 1:
        raise ValueError(f"--num-examples must be >= 1, got {args.num_examples}")
    if args.labels and len(args.labels) != len(args.ckpt):
        raise ValueError(f"--labels gives {len(args.labels)} labels for {len(args.ckpt)} checkpoints")
    loaded = [load(path, device) for path in args.ckpt]
    labels = args.labels or [task.config.mixer_name for task, _ in loaded]
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must differ (one curve each), got {labels}; pass --labels")
    data = loaded[0][1]
    for path, (_, other) in zip(args.ckpt, loaded, strict=True):
        if (other.dim, other.noise_std, other.x_range) != (data.dim, data.noise_std, data.x_range):
            raise ValueError(f"{path} was trained on tasks with dim, noise_std, x_range = {other.dim}, "
                             f"{other.noise_std}, {other.x_range}, unlike {args.ckpt[0]} ({data.dim}, {data.noise_std}, "
                             f"{data.x_range}); evaluate them separately")
    contexts = args.lengths or list(range(1, 2 * data.num_context + 1))
    if min(contexts) < 1:
        raise ValueError(f"--lengths are numbers of context points here and must be >= 1, got {min(contexts)}")
    args.out.mkdir(parents=True, exist_ok=True)
    models = {label: model_predictor(task) for label, (task, _) in zip(labels, loaded, strict=True)}
    print(f"seqmix evaluate: in-context regression, {len(models)} model(s), N = {contexts}", file=sys.stderr)
    curve = context_curve(models, data, contexts, args.num_examples, args.seed, device)
    write_csv(curve, args.out / "context_curve.csv")
    plot_context_curve(curve, args.out / "context_curve.png", sorted({d.num_context for _, d in loaded}),
                       data.baseline_mse, references=(GD_LABEL, BAYES_LABEL))
    if args.gd_comparison:
        rows = [row for label, (task, d) in zip(labels, loaded, strict=True)
                for row in gd_comparison(label, task, d, args.seed, device)]
        write_csv(rows, args.out / "gd_comparison.csv")
        for r in rows:
            print(f"  {r['model']} ({r['weights']}): mse {r['mse']:.4f}, GD {r['mse_reference']:.4f}, gap {r['gap_mse']:.3g}, "
                  f"cosine {r['sensitivity_cosine']:.4f}", file=sys.stderr)
    summary = {
        "command": " ".join(["seqmix evaluate", *map(str, argv)]), "task": "icl_regression",
        "runs": [{"ckpt": str(p), "label": label, "mixer": t.config.mixer_name, "params": t.model.param_count(),
                  "data_hparams": {k: v for k, v in d.hparams.items() if not k.startswith("_")}}
                 for p, label, (t, d) in zip(args.ckpt, labels, loaded, strict=True)],
        "num_context": contexts, "num_examples": args.num_examples, "seed": args.seed, "device": str(device),
        "files": sorted(p.name for p in args.out.iterdir() if p.suffix in (".csv", ".png")),
    }
    atomic_write(args.out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    print(f"seqmix evaluate: wrote {', '.join(summary['files'])} to {args.out}", file=sys.stderr)
    return summary
