"""LMTask: masked loss and accuracy, weight-decay groups, the lr schedule, metric logging and checkpoint round trips."""

import functools
import json
import math
import warnings

import lightning as L
import pytest
import torch
from jsonargparse import ArgumentParser
from torch.utils.data import DataLoader

from seqmix import archs
from seqmix.train.callbacks import FinalMetrics, PerfMonitor
from seqmix.train.data import IGNORE_INDEX, TokenDataset
from seqmix.train.data.mqar import MQARDataModule
from seqmix.train.module import LMTask, lm_loss_and_accuracy, lr_factor, param_groups

warnings.filterwarnings("ignore", ".*does not have many workers.*")
TINY = dict(d_model=16, n_layers=1, vocab_size=32)


def trainer(tmp_path, **kwargs) -> L.Trainer:
    defaults = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0)
    return L.Trainer(**{**defaults, **kwargs})


def tiny_data(**kwargs) -> MQARDataModule:
    defaults = dict(vocab_size=32, seq_len=16, num_kv_pairs=2, num_train_examples=64, num_val_examples=24, batch_size=8)
    return MQARDataModule(**{**defaults, **kwargs})


def test_loss_and_accuracy_ignore_unsupervised_positions_by_hand():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 5.0, 0.0], [1.0, 1.0, 3.0], [0.0, 0.0, 0.0]]])
    labels = torch.tensor([[0, IGNORE_INDEX, 1, IGNORE_INDEX]])
    loss, acc, count = lm_loss_and_accuracy(logits, labels)
    # position 0: -log softmax([2,0,0])[0]; position 2: -log softmax([1,1,3])[1]; positions 1 and 3 carry no loss
    ce0 = -(2 - math.log(math.exp(2) + 2))
    ce2 = -(1 - math.log(2 * math.e + math.exp(3)))
    assert count == 2
    assert loss.item() == pytest.approx((ce0 + ce2) / 2, rel=1e-6)
    assert acc.item() == pytest.approx(0.5)  # position 0 right (argmax 0), position 2 wrong (argmax 2, label 1)
    changed = logits.clone()
    changed[0, 1] = torch.tensor([9.0, -9.0, 9.0])  # change an ignored position: nothing moves
    assert lm_loss_and_accuracy(changed, labels)[0].item() == pytest.approx(loss.item())


def test_all_positions_ignored_gives_zero_count():
    loss, acc, count = lm_loss_and_accuracy(torch.randn(2, 3, 5), torch.full((2, 3), IGNORE_INDEX))
    assert count == 0 and loss.item() == 0 and acc.item() == 0


def test_no_weight_decay_group_is_exactly_norms_biases_A_log_and_D():
    model = archs.LanguageModel(archs.ModelConfig(mixer="mamba", d_model=16, n_layers=2, vocab_size=32))
    decay, exempt = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and exempt["weight_decay"] == 0.0
    names = [n for n, _ in model.named_parameters()]
    expected = {n for n in names if n.endswith((".bias", ".A_log", ".D")) or n.split(".")[-2].startswith("norm")}
    assert set(exempt["names"]) == expected
    assert set(decay["names"]) == set(names) - expected
    for layer in (0, 1):
        assert {f"blocks.{layer}.mixer.A_log", f"blocks.{layer}.mixer.D", f"blocks.{layer}.mixer.dt_proj.bias",
                f"blocks.{layer}.mixer.conv1d.bias", f"blocks.{layer}.norm1.weight", f"blocks.{layer}.norm2.weight"} \
            <= set(exempt["names"])
        assert {f"blocks.{layer}.mixer.conv1d.weight", f"blocks.{layer}.mixer.in_proj.weight",
                f"blocks.{layer}.mixer.dt_proj.weight", f"blocks.{layer}.mlp.fc.weight"} <= set(decay["names"])
    assert "embed.weight" in decay["names"] and "norm.weight" in exempt["names"]
    assert [p.data_ptr() for p in decay["params"]] == [p.data_ptr() for n, p in model.named_parameters()
                                                        if n in decay["names"]]


def test_lr_factor_warmup_then_cosine_to_min():
    w, total, low = 10, 110, 0.1
    f = [lr_factor(s, w, total, low) for s in range(total + 5)]
    assert f[:w] == pytest.approx([(s + 1) / w for s in range(w)])
    assert f[w] == pytest.approx(1.0)
    assert f[w + 50] == pytest.approx((1 + low) / 2)  # halfway through the cosine
    assert all(a >= b for a, b in zip(f[w:], f[w + 1 :], strict=False))
    assert f[total] == pytest.approx(low) and f[-1] == pytest.approx(low)  # stays at the floor
    assert lr_factor(10**6, w, float("inf"), low) == 1.0


def test_optimizer_groups_and_schedule_in_a_real_fit(tmp_path):
    lrs = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            lrs.append([g["lr"] for g in trainer.optimizers[0].param_groups])

    task = LMTask(archs.ModelConfig(mixer="mamba", **TINY), lr=1e-2, weight_decay=0.3, warmup_steps=4, min_lr_ratio=0.2)
    t = trainer(tmp_path, max_steps=20, callbacks=[Record()], limit_val_batches=0)
    t.fit(task, tiny_data(num_train_examples=160))
    opt = t.optimizers[0]
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.9, 0.95)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.3, 0.0]
    assert any(n.endswith("A_log") for n in opt.param_groups[1]["names"])
    expected = [1e-2 * lr_factor(s, 4, 20, 0.2) for s in range(20)]
    assert [g[0] for g in lrs] == pytest.approx(expected)
    assert all(g[0] == g[1] for g in lrs)
    assert max(g[0] for g in lrs) == pytest.approx(1e-2) and lrs[-1][0] < 0.21e-2


def _mixer_factory_from_cli():
    """A ModelConfig whose mixer is what jsonargparse builds from {class_path, init_args}."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--model", type=archs.ModelConfig)
    cfg = parser.parse_args(["--model.mixer", '{"class_path": "seqmix.archs.Mamba", "init_args": {"d_state": 8}}',
                             "--model.vocab_size", "32", "--model.n_layers", "1"])
    return parser.instantiate_classes(cfg).model


@pytest.mark.parametrize("kind", ["name", "class_path", "partial"])
def test_checkpoint_round_trip(tmp_path, kind):
    config = {
        "name": archs.ModelConfig(mixer="linear_attention", mixer_args={"n_heads": 2}, **TINY),
        "class_path": _mixer_factory_from_cli(),
        "partial": archs.ModelConfig(mixer=functools.partial(archs.Attention, n_heads=2), **TINY),
    }[kind]
    task = LMTask(config, param_budget=6000, lr=2e-3, warmup_steps=3)
    t = trainer(tmp_path, max_steps=2, limit_val_batches=0)
    t.fit(task, tiny_data())
    path = tmp_path / "x.ckpt"
    t.save_checkpoint(path)
    hparams = torch.load(path, weights_only=True)["hyper_parameters"]  # plain data: loads without unpickling code
    assert hparams["param_budget"] == 6000 and hparams["model"]["d_model"] == task.config.d_model
    restored = LMTask.load_from_checkpoint(path)
    assert restored.config.d_model == task.config.d_model and restored.config.hidden == task.config.hidden
    assert restored.config.mixer_name == task.config.mixer_name
    assert restored.config.to_dict() == task.config.to_dict()
    if kind == "class_path":
        assert restored.model.blocks[0].mixer.d_state == 8
    x = torch.randint(0, 32, (2, 16))
    task.eval()
    restored.eval()
    torch.testing.assert_close(restored(x), task(x))


def test_param_budget_sizes_the_model_and_records_counts():
    task = LMTask(archs.ModelConfig(mixer="attention", d_model=8, n_layers=2, vocab_size=64), param_budget=20_000)
    counts = task.param_counts
    assert abs(counts["non_embedding"] - 20_000) <= 0.02 * 20_000
    assert counts["total"] == counts["non_embedding"] + 64 * task.config.d_model
    assert counts["total"] == sum(p.numel() for p in task.parameters())
    summary = task.model_summary()
    assert summary["mixer_name"] == "attention" and summary["d_model"] == task.config.d_model > 8
    assert summary["params_non_embedding"] == counts["non_embedding"] and summary["param_budget"] == 20_000
    assert task.hparams.model["d_model"] == task.config.d_model and task.hparams.model["d_ff"] == task.config.hidden
    # resizing the saved config is a no-op, so a checkpoint rebuilds exactly this model
    assert LMTask(archs.ModelConfig.from_dict(task.hparams.model), param_budget=20_000).config.to_dict() == \
        task.config.to_dict()


def test_model_vocabulary_smaller_than_the_data_is_an_error(tmp_path):
    task = LMTask(archs.ModelConfig(mixer="attention", d_model=16, n_layers=1, vocab_size=16))
    with pytest.raises(ValueError, match=r"vocab_size=32 .*model's vocab_size=16"):
        trainer(tmp_path, max_steps=1).fit(task, tiny_data(vocab_size=32))


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [(dict(lr=0.0), "lr"), (dict(betas=(0.9, 1.0)), "betas"), (dict(warmup_steps=-1), "warmup_steps"),
     (dict(min_lr_ratio=1.5), "min_lr_ratio"), (dict(weight_decay=-0.1), "weight_decay")],
)
def test_bad_hyperparameters_raise_naming_them(kwargs, word):
    with pytest.raises(ValueError, match=word):
        LMTask(archs.ModelConfig(**TINY), **kwargs)


def test_eval_metrics_are_token_means_and_final_metrics_file(tmp_path):
    # ragged supervision: batches with different numbers of supervised tokens must still give the exact token mean
    g = torch.Generator().manual_seed(0)
    inputs = torch.randint(0, 32, (10, 12), generator=g)
    labels = torch.where(torch.rand(10, 12, generator=g) < torch.linspace(0.1, 0.9, 10)[:, None], inputs, IGNORE_INDEX)

    class Data(L.LightningDataModule):
        vocab_size = 32
        val_dataloader_names = ["a", "b"]

        def train_dataloader(self):
            return DataLoader(TokenDataset(inputs, labels), batch_size=4)

        def val_dataloader(self):
            return [DataLoader(TokenDataset(inputs, labels), batch_size=3),
                    DataLoader(TokenDataset(inputs[:4], labels[:4]), batch_size=4)]

        def test_dataloader(self):
            return DataLoader(TokenDataset(inputs, labels), batch_size=3)

    task = LMTask(archs.ModelConfig(mixer="attention", **TINY))
    final = FinalMetrics()
    t = trainer(tmp_path, max_steps=3, callbacks=[final, PerfMonitor(window=2, warmup_steps=1)], log_every_n_steps=1)
    data = Data()
    t.fit(task, data)
    val = t.validate(task, data, verbose=False)
    test = t.test(task, data, verbose=False)[0]
    with torch.no_grad():
        loss, acc, _ = lm_loss_and_accuracy(task(inputs), labels)
        loss_b, acc_b, _ = lm_loss_and_accuracy(task(inputs[:4]), labels[:4])
    assert val[0]["val/loss/a"] == pytest.approx(loss.item(), rel=1e-5)
    assert val[0]["val/acc/a"] == pytest.approx(acc.item(), rel=1e-5)
    assert val[1]["val/loss/b"] == pytest.approx(loss_b.item(), rel=1e-5)
    assert test["test/loss"] == pytest.approx(loss.item(), rel=1e-5) and test["test/acc"] == pytest.approx(acc.item())
    written = json.loads((tmp_path / "final_metrics.json").read_text())
    assert written["schema"] == 1 and written["stage"] == "test"
    m = written["metrics"]
    assert m["test/loss"] == pytest.approx(test["test/loss"]) and m["val/acc/b"] == pytest.approx(val[1]["val/acc/b"])
    assert {"train/loss", "train/lr", "perf/tokens_per_s", "perf/peak_rss_bytes"} <= set(m)
    assert m["perf/tokens_per_s"] > 0 and m["perf/peak_rss_bytes"] > 10 * 2**20
    assert written["model"]["mixer_name"] == "attention" and written["model"]["params_total"] == task.param_counts["total"]
    assert written["hparams"]["model"]["mixer"] == "attention" and written["global_step"] == 3
    assert not list(tmp_path.glob(".final_metrics.json.*"))  # the temporary file was renamed, not left behind
