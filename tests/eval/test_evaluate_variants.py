"""`seqmix evaluate` variants: RoPE scalings, decode-time KV policies and recall against state bytes, each checked
against a computation done here on the same examples."""

import math

import pytest
import torch

from seqmix.archs.rope import RopeScaling, set_rope_scaling
from seqmix.train.data import IGNORE_INDEX
from seqmix.train.data.needle import NeedleDataModule
from seqmix.train.tools import evaluate

from .test_evaluate import fit, read_csv


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Barely trained (2 steps) needle checkpoints: RoPE attention, ALiBi attention, Mamba, linear attention."""
    root = tmp_path_factory.mktemp("variants")
    dm = NeedleDataModule(seq_len=32, vocab_size=40, num_keys=8, num_values=8, num_train=64, num_val=8, num_test=8,
                          batch_size=8)
    torch.manual_seed(0)
    fit(dm, root / "rope.ckpt", steps=2, n_layers=2)
    fit(dm, root / "alibi.ckpt", steps=2, mixer_args={"position": "alibi"})
    fit(dm, root / "mamba.ckpt", steps=2, mixer="mamba")
    fit(dm, root / "linear.ckpt", steps=2, mixer="linear_attention")
    return root, dm


def accuracy_here(model, dm, length, depths, n, seed, logits_of=None):
    """Accuracy over answer tokens, pooled over depths, computed without the evaluate module's scoring."""
    correct = total = 0
    for depth in depths:
        batch = dm.generate(n, length, depth, generator=evaluate.eval_generator(seed, length, depth))
        with torch.no_grad():
            logits = model(batch["input_ids"]) if logits_of is None else logits_of(batch["input_ids"])
        mask = batch["labels"] != IGNORE_INDEX
        correct += int(((logits.argmax(-1) == batch["labels"]) & mask).sum())
        total += int(mask.sum())
    return correct / total


@pytest.mark.slow
def test_one_curve_per_rope_method_each_the_accuracy_of_the_scaled_model(ckpts, tmp_path):
    root, dm = ckpts
    summary = evaluate.evaluate_cli(["--ckpt", str(root / "rope.ckpt"), "--lengths", "32", "128", "--depths", "0", "1",
                                     "--rope-scaling", "none", "pi", "ntk", "yarn", "--num-examples", "6", "--seed", "2",
                                     "--out", str(tmp_path)])
    rows = read_csv(tmp_path / "extrapolation.csv")
    labels = ["attention rope=none", "attention rope=pi x4", "attention rope=ntk x4", "attention rope=yarn x4"]
    assert list(dict.fromkeys(r["model"] for r in rows)) == labels  # factor default: 128 / 32
    assert [r["rope_scaling"]["original_max_len"] for r in summary["runs"]] == [32] * 4
    model, _ = evaluate.load_checkpoint(root / "rope.ckpt", torch.device("cpu"))
    logits = {}
    for method, label in zip(["none", "pi", "ntk", "yarn"], labels, strict=True):
        set_rope_scaling(model, RopeScaling(method, 4.0, original_max_len=32))
        for r in (r for r in rows if r["model"] == label):
            assert float(r["accuracy"]) == pytest.approx(accuracy_here(model, dm, int(r["length"]), [0.0, 1.0], 6, 2))
        batch = dm.generate(2, 128, 0.5, generator=evaluate.eval_generator(0, 128, 0.5))
        with torch.no_grad():
            logits[method] = model(batch["input_ids"])
    for method in ("pi", "ntk", "yarn"):  # every method really changes what the model computes
        assert not torch.allclose(logits[method], logits["none"], atol=1e-4), method
    assert (tmp_path / "heatmap_attention_rope=yarn_x4.png").exists()


def test_an_explicit_rope_factor_is_used(ckpts, tmp_path):
    root, _ = ckpts
    summary = evaluate.evaluate_cli(["--ckpt", str(root / "rope.ckpt"), "--lengths", "64", "--depths", "0",
                                     "--rope-scaling", "yarn", "--rope-factor", "8", "--num-examples", "2",
                                     "--out", str(tmp_path)])
    assert summary["runs"][0]["label"] == "attention rope=yarn x8" and summary["runs"][0]["rope_scaling"]["factor"] == 8


@pytest.mark.parametrize("prefill_len", [1, 20, 48])
def test_decode_logits_are_the_parallel_forward(ckpts, prefill_len):
    root, dm = ckpts
    batch = dm.generate(3, 48, 0.5, generator=evaluate.eval_generator(0, 48, 0.5))
    for name in ("rope", "alibi", "mamba", "linear"):
        model, _ = evaluate.load_checkpoint(root / f"{name}.ckpt", torch.device("cpu"))
        with torch.no_grad():
            expected = model(batch["input_ids"])
        got = evaluate.decode_logits(model, batch["input_ids"], prefill_len)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=2e-4, rtol=1e-4)


def test_a_model_without_rope_checkpoint_is_refused_before_any_sweep(ckpts, tmp_path, capsys):
    root, _ = ckpts
    code = evaluate.main(["--ckpt", str(root / "rope.ckpt"), str(root / "mamba.ckpt"), "--rope-scaling", "pi",
                          "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "mamba.ckpt" in err and "RoPE scaling needs a model with RoPE layers" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "extrapolation.csv").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rope-scaling", "linear"], "unknown RoPE scaling method 'linear'; choose one of none, pi, ntk, yarn"),
        (["--rope-scaling", "pi", "--rope-factor", "0.5"], "--rope-factor must be a number >= 1, got 0.5"),
        (["--rope-factor", "4"], "--rope-factor 4 needs --rope-scaling"),
        (["--prefill-len", "0"], "--prefill-len must be >= 1, got 0"),
    ],
)
def test_bad_variants_fail_with_one_clear_line(ckpts, tmp_path, capsys, args, message):
    root, _ = ckpts
    code = evaluate.main(["--ckpt", str(root / "rope.ckpt"), *args, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_rope_scaling_on_alibi_attention_is_refused(ckpts, tmp_path, capsys):
    root, _ = ckpts
    assert evaluate.main(["--ckpt", str(root / "alibi.ckpt"), "--rope-scaling", "ntk", "--out", str(tmp_path)]) == 2
    assert "position='alibi'" in capsys.readouterr().err


@pytest.mark.slow
def test_recall_vs_state_without_policies_puts_each_recurrent_checkpoint_at_its_state(ckpts, tmp_path):
    root, dm = ckpts
    evaluate.evaluate_cli(["--ckpt", str(root / "mamba.ckpt"), str(root / "linear.ckpt"), "--recall-vs-state",
                           "--lengths", "32", "64", "--depths", "0.5", "--num-examples", "4", "--out", str(tmp_path)])
    rows = read_csv(tmp_path / "recall_vs_state.csv")
    assert [(r["series"], int(r["length"])) for r in rows] == [(s, n) for s in ("mamba", "linear_attention")
                                                               for n in (32, 64)]
    for r in rows:
        model, _ = evaluate.load_checkpoint(root / ("mamba.ckpt" if r["mixer"] == "mamba" else "linear.ckpt"),
                                            torch.device("cpu"))
        length = int(r["length"])
        _, states = model.prefill(torch.zeros(1, length, dtype=torch.long))  # the state one sequence really holds
        held = sum(t.numel() * t.element_size() for s in states for t in s.values() if torch.is_tensor(t))
        assert int(r["state_bytes"]) == held == model.state_bytes(length)
        assert float(r["accuracy"]) == pytest.approx(accuracy_here(model, dm, length, [0.5], 4, 0))
    assert not math.isnan(float(rows[0]["accuracy"]))
    assert (tmp_path / "recall_vs_state.png").stat().st_size > 10_000


def decode_here(model, inputs):
    """Logits (B, L, V): the first token prefilled, every later one fed through model.step, written out here."""
    logits, states = model.prefill(inputs[:, :1], max_len=inputs.shape[1])
    out = [logits]
    for t in range(1, inputs.shape[1]):
        step, states = model.step(inputs[:, t], states)
        out.append(step[:, None])
    return torch.cat(out, dim=1)


@pytest.mark.slow
def test_the_full_policy_gives_exactly_the_parallel_forward_accuracy(ckpts, tmp_path):
    root, _ = ckpts
    common = ["--ckpt", str(root / "rope.ckpt"), "--lengths", "24", "40", "--depths", "0", "1",
              "--num-examples", "8", "--seed", "1"]
    evaluate.evaluate_cli([*common, "--out", str(tmp_path / "forward")])
    evaluate.evaluate_cli([*common, "--kv-policy", "full", "--out", str(tmp_path / "full")])
    forward, full = read_csv(tmp_path / "forward" / "heatmap.csv"), read_csv(tmp_path / "full" / "heatmap.csv")
    assert [r["model"] for r in full] == ["attention kv=full"] * 4
    for a, b in zip(forward, full, strict=True):
        assert (a["length"], a["depth"], a["accuracy"], a["exact_match"]) == (b["length"], b["depth"], b["accuracy"],
                                                                              b["exact_match"])


@pytest.mark.slow
def test_each_policy_curve_is_the_accuracy_of_decoding_under_it(ckpts, tmp_path):
    from seqmix.archs.kv_policy import set_kv_policy

    root, dm = ckpts
    policies = ["window:8", "sinks:2+6", "heavy_hitters:8", "window:64"]
    summary = evaluate.evaluate_cli(["--ckpt", str(root / "rope.ckpt"), "--lengths", "32", "--depths", "0",
                                     "--kv-policy", *policies, "--num-examples", "6", "--out", str(tmp_path)])
    assert [r["kv_policy"] for r in summary["runs"]] == policies and summary["runs"][0]["prefill_len"] == 1
    rows = {r["model"]: float(r["accuracy"]) for r in read_csv(tmp_path / "extrapolation.csv")}
    model, _ = evaluate.load_checkpoint(root / "rope.ckpt", torch.device("cpu"))
    for spec in policies:
        set_kv_policy(model, spec)
        here = accuracy_here(model, dm, 32, [0.0], 6, 0, logits_of=lambda x: decode_here(model, x))
        assert rows[f"attention kv={spec}"] == pytest.approx(here), spec
    set_kv_policy(model, "full")
    assert rows["attention kv=window:64"] == pytest.approx(accuracy_here(model, dm, 32, [0.0], 6, 0))  # W >= L


@pytest.mark.slow
def test_a_policy_gives_the_same_logits_whatever_the_prefill_length(ckpts):
    from seqmix.archs.kv_policy import set_kv_policy

    root, dm = ckpts
    model, _ = evaluate.load_checkpoint(root / "rope.ckpt", torch.device("cpu"))
    batch = dm.generate(2, 32, 0.0, generator=evaluate.eval_generator(0, 32, 0.0))
    for spec in ("window:8", "sinks:2+6", "heavy_hitters:8"):
        set_kv_policy(model, spec)
        stepped = evaluate.decode_logits(model, batch["input_ids"], 1)
        for prefill_len in (12, 32):
            torch.testing.assert_close(evaluate.decode_logits(model, batch["input_ids"], prefill_len), stepped)
        assert not torch.allclose(stepped, model(batch["input_ids"]), atol=1e-4), spec  # the policy really acts


@pytest.mark.slow
def test_recall_vs_state_places_each_policy_at_its_bytes_and_recurrent_mixers_at_theirs(ckpts, tmp_path):
    root, _ = ckpts
    evaluate.evaluate_cli(["--ckpt", str(root / "rope.ckpt"), str(root / "mamba.ckpt"), "--recall-vs-state",
                           "--kv-policy", "full", "window:8", "window:16", "sinks:2+6", "heavy_hitters:8",
                           "--lengths", "40", "--depths", "0.5", "--num-examples", "4", "--out", str(tmp_path)])
    rows = read_csv(tmp_path / "recall_vs_state.csv")
    assert [(r["series"], r["kv_policy"]) for r in rows] == [
        ("attention full", "full"), ("attention window", "window:8"), ("attention window", "window:16"),
        ("attention sinks", "sinks:2+6"), ("attention heavy_hitters", "heavy_hitters:8"), ("mamba", "")]
    model, _ = evaluate.load_checkpoint(root / "rope.ckpt", torch.device("cpu"))
    from seqmix.archs.kv_policy import set_kv_policy

    for r in rows[:-1]:
        set_kv_policy(model, r["kv_policy"])
        _, states = model.prefill(torch.zeros(1, 40, dtype=torch.long))
        held = sum(t.numel() * t.element_size() for s in states for t in s.values() if torch.is_tensor(t))
        assert int(r["state_bytes"]) == held, r["kv_policy"]
    full, window8, window16 = (int(r["state_bytes"]) for r in rows[:3])
    assert window8 < window16 < full


@pytest.mark.parametrize(
    "policy, message",
    [
        ("lru:8", "unknown KV policy 'lru:8'; valid: full, window:W"),
        ("sinks:4+0", "is smaller than sinks + 1"),
        ("window:0", "W must be an integer >= 1, got '0'"),
    ],
)
def test_bad_policies_fail_with_one_line_before_any_checkpoint_is_read(tmp_path, capsys, policy, message):
    code = evaluate.main(["--ckpt", str(tmp_path / "never-read.ckpt"), "--kv-policy", policy, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
