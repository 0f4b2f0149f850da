"""Numerical guards: stop, or skip the optimizer step, when a training loss or gradient is not finite."""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from .checks import check_int

ACTIONS = ("stop", "skip")


class NonFiniteError(RuntimeError):
    """Training met a non-finite loss or gradient (the message names the global step and the first bad parameter)."""


def first_nonfinite(named: list[tuple[str, Tensor]]) -> tuple[str | None, int]:
    """The name of the first tensor with a NaN or inf, and how many of the tensors have one."""
    if not named:
        return None, 0
    flags = torch.stack([~torch.isfinite(t).all() for _, t in named]).tolist()
    bad = [name for (name, _), flag in zip(named, flags, strict=True) if flag]
    return (bad[0] if bad else None), len(bad)


class NonFiniteGuard(Callback):
    """Checks every training step's loss and gradients (after backward, before the optimizer step) for NaN / inf.

    ``action="stop"`` (default): the bad step is not applied, training stops at the end of that batch (the run
    directory, metrics so far, final_metrics.json and end-of-training checkpoints are written as usual), then
    `NonFiniteError` is raised naming the global step and the first parameter whose gradient is not finite.
    ``action="skip"``: the bad step's gradients are dropped so the optimizer leaves every parameter and its state as
    they were; a warning names the step and parameter; after ``max_consecutive_skips`` bad steps in a row it stops as
    above. With fp16 loss scaling (``precision="16-mixed"``) non-finite gradients are the scaler's business (it skips
    such steps and lowers the scale); the guard then checks only the loss.
    """

    def __init__(self, action: Literal["stop", "skip"] = "stop", max_consecutive_skips: int = 10):
        super().__init__()
        if action not in ACTIONS:
            raise ValueError(f"nonfinite.action must be one of {', '.join(ACTIONS)}, got {action!r}")
        check_int("nonfinite.max_consecutive_skips", max_consecutive_skips)
        self.action, self.max_consecutive_skips = action, max_consecutive_skips
        self.consecutive = 0
        self.skipped: list[int] = []
        self.failure: str | None = None
        self._loss_ok: Tensor | None = None
        self._loss: Tensor | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.consecutive, self.failure, self._loss_ok, self._loss = 0, None, None, None

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor) -> None:
        # with gradient accumulation: every micro-batch's loss since the last optimizer step must be finite
        ok = torch.isfinite(loss.detach()).all()
        self._loss_ok = ok if self._loss_ok is None else self._loss_ok & ok
        self._loss = loss.detach()

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        loss_ok, loss, self._loss_ok, self._loss = self._loss_ok, self._loss, None, None
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        grads = [] if scaler is not None else [
            (name, p.grad) for name, p in pl_module.named_parameters() if p.grad is not None
        ]
        flags = [~torch.isfinite(g).all() for _, g in grads]
        if loss_ok is not None:
            flags.append(~loss_ok)
        local = bool(torch.stack(flags).any()) if flags else False  # one host sync per step
        bad = trainer.strategy.reduce_boolean_decision(local, all=False)  # every rank decides alike
        if not bad:
            self.consecutive = 0
            return
        step = trainer.global_step
        self._drop_gradients(optimizer)
        if self.failure is not None:  # already stopping (e.g. min_steps not reached yet): apply no more bad steps
            return
        if local:
            what = f"non-finite {self._describe(grads, loss, scaler is not None, step)}"
        else:
            what = f"non-finite loss or gradient on another process at global step {step}"
        self.consecutive += 1
        self.skipped.append(step)
        if self.action == "skip" and self.consecutive <= self.max_consecutive_skips:
            rank_zero_warn(f"{what}: skipped this optimizer step ({self.consecutive} in a row; the run stops after "
                           f"{self.max_consecutive_skips})")
            return
        why = "" if self.action == "stop" else f"; {self.consecutive} bad steps in a row, more than max_consecutive_skips"
        hint = " (--nonfinite.action skip skips such steps)" if self.action == "stop" else ""
        self.failure = (f"{what}{why}; training stopped without applying it, results so far in "
                        f"{trainer.log_dir or trainer.default_root_dir}{hint}")
        trainer.should_stop = True

    @staticmethod
    def _describe(grads: list[tuple[str, Tensor]], loss: Tensor | None, scaled: bool, step: int) -> str:
        loss_text = "loss not recorded" if loss is None else f"loss {loss.float().mean().item():.4g}"
        name, count = first_nonfinite(grads)
        if name is not None:
            of = f"first of {count} parameters; " if count > 1 else ""
            return f"gradient at global step {step} in {name} ({of}{loss_text})"
        return f"loss at global step {step} ({loss_text}" + (")" if scaled else "; every gradient finite)")

    @staticmethod
    def _drop_gradients(optimizer: Any) -> None:
        """Set every gradient to None: optimizers skip such parameters, leaving them and their state untouched."""
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and self.failure is not None:
            failure, self.failure = self.failure, None
            raise NonFiniteError(failure)
