"""The one place seqmix touches private Lightning / jsonargparse API, for what neither exposes publicly.

Pinned to the versions in pyproject.toml (`lightning>=2.4,<2.7`, `jsonargparse>=4.30,<5`);
tests/train/test_private_api.py checks the installed versions are in that range and that every name used here exists.
Everything else in seqmix uses public hooks only."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

SUPPORTED = {"lightning": ">=2.4,<2.7", "jsonargparse": ">=4.30,<5"}
"""Distribution -> the version range this module is written for (the same as pyproject.toml's)."""

CHECKPOINT_METHODS = ("_should_skip_saving_checkpoint", "_monitor_candidates", "_save_topk_checkpoint",
                      "_save_last_checkpoint")
"""ModelCheckpoint's private methods `save_checkpoint_now` calls (it has no public "save now")."""


def save_checkpoint_now(callback: ModelCheckpoint, trainer: L.Trainer) -> None:
    """Save a top-k and a last checkpoint at the current step as `callback` would, unless it just saved at this step."""
    if callback._should_skip_saving_checkpoint(trainer):
        return
    candidates = callback._monitor_candidates(trainer)
    if callback.save_top_k != 0:
        callback._save_topk_checkpoint(trainer, candidates)
    if callback.save_last:
        callback._save_last_checkpoint(trainer, candidates)


def subcommand_parsers(parser: Any) -> dict[str, Any]:
    """A jsonargparse parser's subcommand parsers by name ({} if it has none)."""
    return dict(getattr(getattr(parser, "_subcommands_action", None), "choices", None) or {})


def option_strings(parser: Any) -> list[str]:
    """Every option string (``--trainer.max_steps``, ...) an argparse / jsonargparse parser knows."""
    return [o for action in parser._actions for o in action.option_strings]
