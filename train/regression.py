"""RegressionTask: LMTask's loop (sizing, AdamW, schedule, logging) for real-valued tokens and a real-valued answer."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from seqmix.archs import ModelConfig, RegressionModel

from .checks import check_int
from .module import DEFAULT_MODEL, LMTask


class RegressionTask(LMTask):
    """Trains an archs.RegressionModel on batches {"inputs" (B, L, d_in), "targets" (B,)} (see train.data.icl_regression):
    the mean squared error of the prediction at the last position, the query. `val/loss` and `test/loss` are that MSE.

    `d_in` is the tokens' width (the CLI links it to the data's `token_dim`); `token_space` builds von Oswald et al.'s
    attention-only stack on the tokens themselves (d_model = d_in, mlp_ratio 0, no param_budget; see RegressionModel)."""

    def __init__(self, model: ModelConfig = DEFAULT_MODEL, d_in: int | None = 11, token_space: bool = False,
                 **kwargs: Any):
        """`model` and `kwargs` as LMTask's (param_budget, lr, weight_decay, betas, warmup_steps, min_lr_ratio); the
        hparams hold d_in and token_space too, so a checkpoint rebuilds the model."""
        if d_in is None:  # what the CLI links from a data module without real-valued tokens
            raise ValueError("d_in is None: the data has no token_dim (real-valued tokens); RegressionTask trains on "
                             "tasks such as icl_regression")
        if not isinstance(token_space, bool):
            raise ValueError(f"token_space must be true or false, got {token_space!r}")
        if token_space and kwargs.get("param_budget") is not None:
            raise ValueError(f"param_budget={kwargs['param_budget']!r} resizes d_model, which token_space fixes to "
                             f"d_in={d_in}; leave param_budget null")
        self.d_in, self.token_space = check_int("d_in", d_in), token_space  # read by build_model, in LMTask's init
        super().__init__(model, **kwargs)
        self.save_hyperparameters({**self.hparams, "d_in": d_in, "token_space": token_space})

    def build_model(self, config: ModelConfig) -> RegressionModel:
        """The regression backbone on the same blocks and mixers as the language model."""
        return RegressionModel(config, self.d_in, self.token_space)

    def describe_inputs(self) -> str:
        return f"d_in={self.d_in}" + (" token_space" if self.token_space else "")

    def model_summary(self) -> dict[str, Any]:
        """As LMTask's, with the totals of this model (read-in and read-out in place of the embedding)."""
        return {**super().model_summary(), "vocab_size": None, "params_total": self.model.param_count(),
                "d_in": self.d_in, "token_space": self.token_space}

    def forward(self, inputs: Tensor) -> Tensor:
        """Predictions (B, L) for tokens (B, L, d_in)."""
        return self.model(inputs)

    def predict_query(self, inputs: Tensor) -> Tensor:
        """The prediction at the last position, the query: (B,)."""
        return self(inputs)[:, -1]

    def batch_tokens(self, batch: dict[str, Tensor]) -> int:
        return batch["inputs"].shape[0] * batch["inputs"].shape[1]

    def setup(self, stage: str) -> None:
        """Check the data's tokens are as wide as the model reads; then as LMTask."""
        width = getattr(self.trainer.datamodule, "token_dim", None) if self._trainer is not None else None
        if isinstance(width, int) and width != self.d_in:
            raise ValueError(f"the data's tokens are {width} wide but the model reads d_in={self.d_in}; set model d_in "
                             f"to {width}")
        super().setup(stage)

    def _loss(self, batch: dict[str, Tensor]) -> Tensor:
        return F.mse_loss(self.predict_query(batch["inputs"]).float(), batch["targets"].float())

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True, sync_dist=True)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        return loss

    def _eval_step(self, stage: str, batch: dict[str, Tensor], dataloader_idx: int) -> None:
        suffix = self._dataloader_suffix(stage, dataloader_idx)
        self.log(f"{stage}/loss{suffix}", self._loss(batch), batch_size=batch["targets"].shape[0],
                 add_dataloader_idx=False, sync_dist=True, prog_bar=not suffix)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        return {"predictions": self.predict_query(batch["inputs"]), "targets": batch["targets"]}
