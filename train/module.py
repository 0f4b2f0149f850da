"""LMTask: the one LightningModule every mixer is trained, validated and tested in."""

from __future__ import annotations

import functools
import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor

from seqmix import archs
from seqmix.archs import LanguageModel, ModelConfig

from .loss import lm_loss_and_accuracy
from .memory import check_model_fits, physical_memory
from .optim import check_optimizer_args, lr_factor, param_groups
from .warm_start import load_weights

DEFAULT_MODEL = ModelConfig()

# the helpers LMTask is made of, importable from here as before
__all__ = ["DEFAULT_MODEL", "LMTask", "check_model_fits", "check_optimizer_args", "lm_loss_and_accuracy", "lr_factor",
           "param_groups", "physical_memory"]


class LMTask(L.LightningModule):
    """Next-token training of an archs.LanguageModel on batches {"input_ids", "labels"} (see train.data)."""

    def __init__(
        self,
        model: ModelConfig = DEFAULT_MODEL,
        param_budget: int | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.95),
        warmup_steps: int = 100,
        min_lr_ratio: float = 0.1,
        init_from: str | None = None,
    ):
        """`model` may also be the dict saved in hparams; with `param_budget` (non-embedding parameters) the model is
        resized by archs.match_params, and the resized config is what hparams hold (resizing it again is a no-op).
        `init_from`: a checkpoint of the same model whose weights this run starts from (optimiser and schedule fresh);
        not kept in hparams, so a checkpoint of this run loads without it."""
        super().__init__()
        config = ModelConfig.from_dict(model) if isinstance(model, dict) else model
        if not isinstance(config, ModelConfig):
            raise TypeError(f"model must be an archs.ModelConfig, got {type(model).__name__}")
        check_optimizer_args(lr, weight_decay, betas, warmup_steps, min_lr_ratio)
        if param_budget is not None:
            try:
                config, problem = archs.match_params(config, param_budget), None
            except ValueError as err:
                problem = str(err)
            if problem:  # raised outside the handler: the CLI reports the innermost ValueError, which is this one
                raise ValueError(f"param_budget={param_budget!r}: {problem}")
        check_model_fits(config, param_budget)
        self.config = config
        self.model = self.build_model(config)
        if init_from is not None:
            load_weights(self.model, config, init_from)
        self.save_hyperparameters({
            "model": config.to_dict(), "param_budget": param_budget, "lr": lr, "weight_decay": weight_decay,
            "betas": tuple(betas), "warmup_steps": warmup_steps, "min_lr_ratio": min_lr_ratio,
        })
        rank_zero_info(
            f"seqmix model: mixer={config.mixer_name} d_model={config.d_model} d_ff={config.hidden} "
            f"n_layers={config.n_layers} {self.describe_inputs()} params total={self.param_counts['total']:,} "
            f"non-embedding={self.param_counts['non_embedding']:,}"
            + (f" (budget {param_budget:,})" if param_budget is not None else "")
        )

    def build_model(self, config: ModelConfig) -> torch.nn.Module:
        """The network this task trains, built from the (resized) config (a subclass may build another)."""
        return LanguageModel(config)

    def describe_inputs(self) -> str:
        """What the model reads, for the log line that describes it."""
        return f"vocab_size={self.config.vocab_size}"

    @property
    def param_counts(self) -> dict[str, int]:
        """Parameter counts: total (tied embedding once) and non-embedding."""
        return {"total": self.model.param_count(), "non_embedding": self.model.param_count(embedding=False)}

    def model_summary(self) -> dict[str, Any]:
        """The resolved model, flat: mixer name, widths, and parameter counts (logged as hyperparameters)."""
        return {**archs.model_summary(self.config, self.model), "param_budget": self.hparams.param_budget}

    def forward(self, input_ids: Tensor) -> Tensor:
        """Logits (B, L, V) for token ids (B, L)."""
        return self.model(input_ids)

    def batch_tokens(self, batch: dict[str, Tensor]) -> int:
        """Tokens in a batch (B * L), for throughput."""
        return batch["input_ids"].numel()

    def setup(self, stage: str) -> None:
        """Check the data fits the model's vocabulary; record the resolved model in every logger."""
        data_vocab = getattr(self.trainer.datamodule, "vocab_size", None) if self._trainer is not None else None
        if isinstance(data_vocab, int) and data_vocab > self.config.vocab_size:
            raise ValueError(
                f"the data uses vocab_size={data_vocab} but the model's vocab_size={self.config.vocab_size} is "
                f"smaller; set model.vocab_size >= {data_vocab}"
            )
        if self._trainer is not None:
            for logger in self.loggers:
                logger.log_hyperparams({f"resolved/{k}": v for k, v in self.model_summary().items()})

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, acc, _ = lm_loss_and_accuracy(self(batch["input_ids"]), batch["labels"])
        # under DDP: the mean over processes, i.e. the loss of the global batch that the averaged gradient descends
        self.log("train/loss", loss, prog_bar=True, sync_dist=True)
        self.log("train/acc", acc, sync_dist=True)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        return loss

    def _eval_step(self, stage: str, batch: dict[str, Tensor], dataloader_idx: int) -> None:
        loss, acc, count = lm_loss_and_accuracy(self(batch["input_ids"]), batch["labels"])
        if count == 0:
            return
        suffix = self._dataloader_suffix(stage, dataloader_idx)
        # weight by supervised tokens so that epoch values are exact token means, whatever the batch composition
        for name, value in (("loss", loss), ("acc", acc)):
            self.log(f"{stage}/{name}{suffix}", value, batch_size=count, add_dataloader_idx=False, sync_dist=True,
                     prog_bar=not suffix)

    def _dataloader_suffix(self, stage: str, dataloader_idx: int) -> str:
        loaders = self.trainer.num_val_batches if stage == "val" else self.trainer.num_test_batches
        if len(loaders) <= 1:
            return ""
        names = getattr(self.trainer.datamodule, f"{stage}_dataloader_names", None)
        return f"/{names[dataloader_idx]}" if names else f"/dl{dataloader_idx}"

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("val", batch, dataloader_idx)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("test", batch, dataloader_idx)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        return {"predictions": self(batch["input_ids"]).argmax(-1), "labels": batch["labels"]}

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = torch.optim.AdamW(param_groups(self.model, hp.weight_decay), lr=hp.lr, betas=tuple(hp.betas))
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            rank_zero_warn("training length is unbounded (no max_steps / max_epochs): lr stays at its peak after warmup")
        schedule = functools.partial(
            lr_factor, warmup_steps=hp.warmup_steps, total_steps=total, min_lr_ratio=hp.min_lr_ratio
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
