"""`seqmix evaluate`: a trained model's heatmap and extrapolation curve, checked against independent computations."""

import csv
import json
import math

import lightning as L
import matplotlib.figure
import matplotlib.image
import pytest
import torch

from seqmix.archs import ModelConfig
from seqmix.train.data import IGNORE_INDEX
from seqmix.train.data.copying import SelectiveCopyingDataModule
from seqmix.train.data.mqar import MQARDataModule
from seqmix.train.data.needle import NeedleDataModule
from seqmix.train.module import LMTask
from seqmix.train.tools import evaluate

DEPTHS = [0.0, 0.25, 0.5, 0.75, 1.0]


def fit(datamodule, path, steps, mixer="attention", **model):
    """Train an LMTask on the data module for `steps` steps and save a checkpoint (with the data's hyperparameters)."""
    config = ModelConfig(mixer=mixer, vocab_size=datamodule.vocab_size, **{"d_model": 32, "n_layers": 1, **model})
    task = LMTask(config, lr=3e-3, warmup_steps=min(20, steps), weight_decay=0.0)
    trainer = L.Trainer(
        max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small gains nothing from more, and loses a lot when cores are contended
    try:
        trainer.fit(task, datamodule)
    finally:
        torch.set_num_threads(threads)
    trainer.save_checkpoint(path)
    return task.model.eval()


def read_csv(path):
    return list(csv.DictReader(open(path)))


@pytest.fixture(scope="module")
def passkey(tmp_path_factory):
    """A two-layer attention model trained on passkey retrieval at 64 tokens, all depths (about 190 steps)."""
    torch.manual_seed(0)
    dm = NeedleDataModule(seq_len=64, vocab_size=24, num_keys=4, num_values=8, num_train=3000, num_val=64,
                          num_test=64, batch_size=32, seed=0)
    path = tmp_path_factory.mktemp("passkey") / "needle.ckpt"
    model = fit(dm, path, steps=190, d_model=64, n_layers=2, mixer_args={"n_heads": 2})
    return path, model, dm


@pytest.mark.slow
def test_trained_attention_retrieves_the_passkey_at_every_depth_and_the_heatmap_says_so(passkey, tmp_path, monkeypatch):
    path, model, dm = passkey
    figures = []
    save = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: (figures.append(fig), save(fig, *a, **k)))
    out = tmp_path / "eval"
    evaluate.main(["--ckpt", str(path), "--task", "needle", "--lengths", "64", "128", "--depths", *map(str, DEPTHS),
                             "--num-examples", "40", "--seed", "3", "--out", str(out)])
    rows = read_csv(out / "heatmap.csv")
    assert list(rows[0]) == ["model", "length", "depth", "accuracy", "exact_match", "n_examples", "n_tokens"]
    assert [(int(r["length"]), float(r["depth"])) for r in rows] == [(n, d) for n in (64, 128) for d in DEPTHS]

    # the CSV holds the accuracy of exactly these examples, computed here without the evaluate module's scoring
    for r in rows:
        length, depth = int(r["length"]), float(r["depth"])
        batch = dm.generate(40, length, depth, generator=evaluate.eval_generator(3, length, depth))
        start = dm.needle_start(length, depth)
        assert (batch["input_ids"][:, start] == 0).all()  # the needle is where the row says
        with torch.no_grad():
            predicted = model(batch["input_ids"])[:, -1].argmax(-1)
        correct = (predicted == batch["labels"][:, -1]).float().mean().item()
        assert float(r["accuracy"]) == pytest.approx(correct) and int(r["n_examples"]) == 40
        assert float(r["exact_match"]) == pytest.approx(correct)  # one answer token per example
        if length == 64:  # trained at every depth of this length
            assert correct >= 0.95, f"passkey at depth {depth}: accuracy {correct}"

    heatmap = next(f for f in figures if f.axes[0].images)
    ax = heatmap.axes[0]
    assert ax.get_xlabel().startswith("context length") and "depth" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["64*", "128"]
    assert [float(t.get_text()) for t in ax.get_yticklabels()] == DEPTHS
    grid = ax.images[0].get_array()
    for r in rows:
        i, j = DEPTHS.index(float(r["depth"])), [64, 128].index(int(r["length"]))
        assert grid[i, j] == pytest.approx(float(r["accuracy"]))
    pixels = matplotlib.image.imread(out / "heatmap.png")
    assert pixels.shape[0] > 200 and pixels.shape[1] > 300 and pixels.std() > 0.05

    curve = read_csv(out / "extrapolation.csv")
    assert [int(r["length"]) for r in curve] == [64, 128]
    for r in curve:  # the curve is the heatmap's column, pooled over depths
        column = [float(h["accuracy"]) for h in rows if h["length"] == r["length"]]
        assert float(r["accuracy"]) == pytest.approx(sum(column) / len(column))
        assert int(r["n_examples"]) == 200
    assert (out / "extrapolation.png").stat().st_size > 10_000
    assert json.loads((out / "summary.json").read_text())["runs"][0]["train_len"] == 64


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """Barely trained checkpoints (2 steps) of a task without depth, of MQAR, and of the needle task."""
    root = tmp_path_factory.mktemp("untrained")
    small = dict(num_train=64, num_val=8, num_test=8, batch_size=8)
    copying = SelectiveCopyingDataModule(seq_len=24, vocab_size=10, num_tokens=4, **small)
    fit(copying, root / "copying.ckpt", steps=2)
    mqar = MQARDataModule(vocab_size=64, seq_len=32, num_kv_pairs=4, num_train_examples=64, num_val_examples=8,
                          batch_size=8)
    fit(mqar, root / "mqar.ckpt", steps=2)
    needle = NeedleDataModule(seq_len=32, vocab_size=40, num_keys=8, num_values=8, **small)
    fit(needle, root / "needle_a.ckpt", steps=2)
    fit(needle, root / "needle_b.ckpt", steps=2, mixer="mamba")
    return root


def test_extrapolation_curve_for_a_task_without_depth(untrained, tmp_path):
    summary = evaluate.evaluate_cli(["--ckpt", str(untrained / "copying.ckpt"), "--task", "selective_copying",
                             "--num-examples", "8", "--out", str(tmp_path)])
    assert summary["lengths"] == [24, 48, 96, 192, 384]  # the training length x 1 .. 16
    rows = read_csv(tmp_path / "extrapolation.csv")
    assert [int(r["length"]) for r in rows] == summary["lengths"]
    assert all(int(r["n_tokens"]) == 8 * 4 for r in rows) and all(0 <= float(r["accuracy"]) <= 1 for r in rows)
    assert not (tmp_path / "heatmap.csv").exists() and (tmp_path / "extrapolation.png").exists()


def test_mqar_is_evaluated_at_lengths_its_vocabulary_allows(untrained, tmp_path, capsys):
    evaluate.evaluate_cli(["--ckpt", str(untrained / "mqar.ckpt"), "--task", "mqar", "--lengths", "32", "48",
                           "--num-examples", "8", "--out", str(tmp_path)])
    rows = read_csv(tmp_path / "extrapolation.csv")
    assert [int(r["length"]) for r in rows] == [32, 48] and all(int(r["n_tokens"]) == 8 * 4 for r in rows)
    assert evaluate.main(["--ckpt", str(untrained / "mqar.ckpt"), "--task", "mqar", "--lengths", "128",
                          "--out", str(tmp_path)]) == 2
    assert "vocab_size=64 <= seq_len=128" in capsys.readouterr().err


def test_several_checkpoints_share_one_curve_and_get_a_heatmap_each(untrained, tmp_path):
    summary = evaluate.evaluate_cli(["--ckpt", str(untrained / "needle_a.ckpt"), str(untrained / "needle_b.ckpt"),
                             "--lengths", "32", "64", "--depths", "0", "1", "--num-examples", "4", "--out", str(tmp_path)])
    assert summary["task"] == "needle"  # the data module names its class in the checkpoint's hyperparameters
    assert {r["model"] for r in read_csv(tmp_path / "extrapolation.csv")} == {"attention", "mamba"}
    rows = read_csv(tmp_path / "heatmap.csv")
    assert len(rows) == 2 * 2 * 2
    assert (tmp_path / "heatmap_attention.png").exists() and (tmp_path / "heatmap_mamba.png").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task", "selective_copying", "--depths", "0.5"], "has no depth to sweep"),
        (["--task", "needle", "--depths", "1.5"], "depth must be a fraction"),
        (["--task", "needle", "--lengths", "4"], "seq_len=4 is too short"),
        (["--task", "needle", "--lengths", "0"], "--lengths must be positive"),
        (["--task", "induction"], "do not fit task 'induction'"),
        (["--task", "needle", "--num-examples", "0"], "--num-examples must be >= 1"),
        (["--task", "needle", "--labels", "a", "b"], "2 labels for 1 checkpoints"),
    ],
)
def test_bad_requests_fail_with_one_clear_line(untrained, tmp_path, capsys, args, message):
    ckpt = "copying.ckpt" if "selective_copying" in args else "needle_a.ckpt"
    code = evaluate.main(["--ckpt", str(untrained / ckpt), *args, "--out", str(tmp_path)])
    assert code == 2 and message in capsys.readouterr().err


def test_missing_checkpoint(tmp_path, capsys):
    assert evaluate.main(["--ckpt", str(tmp_path / "nope.ckpt"), "--task", "needle", "--out", str(tmp_path)]) == 2
    assert "nope.ckpt" in capsys.readouterr().err


def test_length_curve_pools_cells_by_counts():
    cells = [
        {"length": 8, "depth": 0.0, "accuracy": 1.0, "exact_match": 1.0, "n_examples": 2, "n_tokens": 4},
        {"length": 8, "depth": 1.0, "accuracy": 0.25, "exact_match": 0.0, "n_examples": 2, "n_tokens": 4},
        {"length": 16, "depth": 0.0, "accuracy": 0.5, "exact_match": 0.5, "n_examples": 2, "n_tokens": 2},
    ]
    assert evaluate.length_curve(cells) == [
        {"length": 8, "accuracy": 5 / 8, "exact_match": 0.5, "n_examples": 4, "n_tokens": 8},
        {"length": 16, "accuracy": 0.5, "exact_match": 0.5, "n_examples": 2, "n_tokens": 2},
    ]


def test_score_counts_only_labelled_positions():
    class Echo(torch.nn.Module):  # predicts each input token back
        def forward(self, x):
            return torch.nn.functional.one_hot(x, 5).float()

    inputs = torch.tensor([[1, 2, 3], [4, 4, 4]])
    labels = torch.tensor([[IGNORE_INDEX, 2, 0], [IGNORE_INDEX, IGNORE_INDEX, 4]])
    got = evaluate.score(Echo(), {"input_ids": inputs, "labels": labels}, batch_size=1, device=torch.device("cpu"))
    assert got == {"correct": 2, "n_tokens": 3, "exact": 1, "n_examples": 2}
    assert not math.isnan(got["correct"] / got["n_tokens"])


def test_checkpoints_of_different_tasks_are_refused_before_any_sweep(untrained, tmp_path, capsys):
    assert evaluate.main(["--ckpt", str(untrained / "needle_a.ckpt"), str(untrained / "copying.ckpt"),
                          "--out", str(tmp_path)]) == 2
    assert "was trained on 'selective_copying', not 'needle'" in capsys.readouterr().err
    assert not (tmp_path / "extrapolation.csv").exists()
