"""Perplexity and bits per byte, logged from the epoch's mean loss."""

from __future__ import annotations

import math

import lightning as L
from lightning.pytorch.callbacks import Callback


class TextMetrics(Callback):
    """Logs `val/ppl` and `val/bpb` (`test/...` when testing) from the epoch's mean `val/loss` (nats per token):
    ppl = exp(loss); bpb = loss / ln 2 / bytes_per_token, only when the data module has `bytes_per_token`."""

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # At epoch end, callback_metrics already holds this epoch's token-weighted mean loss.
        loss = trainer.callback_metrics.get(f"{stage}/loss")
        if loss is None:
            return
        loss = float(loss)
        pl_module.log(f"{stage}/ppl", math.exp(min(loss, 80.0)), sync_dist=True)
        per_token = getattr(trainer.datamodule, "bytes_per_token" if stage == "val" else "test_bytes_per_token", None)
        if per_token:  # only data that knows its bytes (text) has a bits-per-byte
            pl_module.log(f"{stage}/bpb", loss / math.log(2) / per_token, sync_dist=True)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, pl_module, "test")
