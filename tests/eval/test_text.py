"""TextDataModule: tokenisation round trips, positional splits, the memmap cache, and ppl / bits-per-byte logging."""

import csv
import math
import pickle
import sys
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch

from seqmix.archs import ModelConfig
from seqmix.train.data.text import (
    BPETokenizer,
    TextDataModule,
    TextMetrics,
    cache,
    corpus_order,
    datamodule,
    default_corpus,
    resolve_paths,
)
from seqmix.train.module import LMTask

LINES = [
    "def grüß(x):  # ünïcödé, 日本語, emoji 🙂\n",
    "    return x * 2 + 1\n",
    "The quick brown fox jumps over the lazy dog.\n",
    "Σὲ γνωρίζω ἀπὸ τὴν κόψη τοῦ σπαθιοῦ τὴν τρομερή.\n",
]


@pytest.fixture
def corpus(tmp_path):
    """Twelve small text files in a directory tree (about 14 kB)."""
    root = tmp_path / "corpus"
    for i in range(12):
        path = root / f"part{i % 3}" / f"doc{i}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{i}:{j} {LINES[(i + j) % 4]}" for j in range(40)), encoding="utf-8")
    return root


def make(corpus, tmp_path, **kw):
    return TextDataModule(paths=str(corpus), cache_dir=str(tmp_path / "cache"), **{"seq_len": 32, "batch_size": 4, **kw})


def stream(dm):
    return np.fromfile(dm.bin_path, dtype=dm.meta["dtype"])


def test_byte_tokens_are_the_files_bytes_in_corpus_order(corpus, tmp_path):
    dm = make(corpus, tmp_path)
    dm.setup()
    files = corpus_order(resolve_paths(str(corpus)))
    raw = b"".join(p.read_bytes() for p in files)
    tokens = stream(dm)
    assert dm.vocab_size == 256 and tokens.dtype == np.uint8 and tokens.tobytes() == raw
    assert dm.meta["num_tokens"] == dm.meta["num_bytes"] == len(raw)
    assert dm.tokenizer.decode(tokens.tolist()) == raw.decode("utf-8")
    assert dm.bytes_per_token == dm.test_bytes_per_token == 1.0


def test_bpe_round_trips_and_counts_bytes_exactly(corpus, tmp_path):
    dm = make(corpus, tmp_path, tokenizer="bpe", bpe_vocab_size=400)
    dm.setup()
    assert isinstance(dm.tokenizer, BPETokenizer) and dm.vocab_size == 400
    files = corpus_order(resolve_paths(str(corpus)))
    texts = [p.read_text(encoding="utf-8") for p in files]
    tokens = stream(dm)
    assert tokens.dtype == np.uint16 and tokens.max() < 400
    assert len(tokens) < dm.meta["num_bytes"] / 1.5  # merges were learned
    assert dm.tokenizer.decode(tokens.tolist()) == "".join(texts)
    assert dm.tokenizer.token_bytes()[tokens].sum() == dm.meta["num_bytes"] == len("".join(texts).encode())
    for line in LINES:
        assert dm.tokenizer.decode(dm.tokenizer.encode(line)) == line
    # bytes per token over exactly the validation labels, counted by decoding them
    val = dm.splits["val"]
    label_bytes = sum(len(dm.tokenizer.decode(tokens[s + 1 : s + 1 + 32].tolist()).encode()) for s in val.starts)
    assert dm.bytes_per_token == pytest.approx(label_bytes / (len(val.starts) * 32), rel=0.02)
    assert dm.bytes_per_token > 1.5


def test_splits_are_contiguous_and_disjoint_by_position(corpus, tmp_path):
    dm = make(corpus, tmp_path, val_fraction=0.1, test_fraction=0.1)
    dm.setup()
    bounds, n = dm.split_bounds(), dm.meta["num_tokens"]
    assert bounds["train"][0] == 0 and bounds["train"][1] == bounds["val"][0]
    assert bounds["val"][1] == bounds["test"][0] and bounds["test"][1] == n
    assert bounds["val"][1] - bounds["val"][0] == int(0.1 * n)
    covered = {}
    for split, windows in dm.splits.items():
        lo, hi = bounds[split]
        assert windows.starts.min() >= lo and windows.starts.max() + 32 + 1 <= hi  # whole windows inside the split
        covered[split] = {int(p) for s in windows.starts for p in range(s, s + 33)}
    assert not covered["train"] & covered["val"] and not covered["train"] & covered["test"]
    assert not covered["val"] & covered["test"]
    # validation windows tile the split without overlap (consecutive starts seq_len apart)
    assert (np.diff(dm.splits["val"].starts) == 32).all()
    # training windows are random, seeded, and within the training range
    batches = [b["input_ids"] for _, b in zip(range(3), dm.train_dataloader(), strict=False)]
    again = [b["input_ids"] for _, b in zip(range(3), make(corpus, tmp_path, val_fraction=0.1, test_fraction=0.1)
                                             .train_dataloader(), strict=False)]
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))
    item = dm.splits["val"][0]
    assert torch.equal(item["input_ids"][1:], item["labels"][:-1])  # labels are the inputs shifted by one


def test_the_token_file_is_reused_and_rebuilt_when_the_corpus_changes(corpus, tmp_path, monkeypatch):
    first = make(corpus, tmp_path)
    first.setup()
    stamp = first.bin_path.stat().st_mtime_ns

    def fail(*_):
        raise AssertionError("tokenised again")

    with monkeypatch.context() as m:
        m.setattr(cache, "read_chunks", fail)  # where the token writer and the data module look them up
        m.setattr(datamodule, "read_texts", fail)
        second = make(corpus, tmp_path)
        second.setup()
    assert second.bin_path == first.bin_path and second.bin_path.stat().st_mtime_ns == stamp
    assert len(list((tmp_path / "cache" / "text").glob("*.bin"))) == 1
    (corpus / "part0" / "doc0.txt").write_text("changed\n" * 300)
    third = make(corpus, tmp_path)
    third.setup()
    assert third.bin_path != first.bin_path and third.meta["num_tokens"] != first.meta["num_tokens"]
    # workers get the file's path, not its contents
    assert len(pickle.dumps(third.splits["train"])) < 2 * third.splits["train"].starts.nbytes


def test_globs_files_and_the_default_corpus(corpus, tmp_path):
    one = corpus / "part1" / "doc1.txt"
    assert resolve_paths([str(one), str(corpus / "part2" / "*.txt")]) == sorted(
        [one.resolve(), *(p.resolve() for p in (corpus / "part2").glob("*.txt"))]
    )
    assert resolve_paths(str(corpus / "**" / "doc1.t?t")) == [one.resolve()]
    with pytest.raises(FileNotFoundError, match="nope"):
        resolve_paths(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="matches no file"):
        resolve_paths(str(corpus / "*.md"))
    stdlib = default_corpus()
    assert len(stdlib) > 100 and all(p.suffix == ".py" for p in stdlib)
    assert not any("site-packages" in p.parts for p in stdlib)
    assert any(p.name == "os.py" for p in stdlib)


def test_bad_settings_are_refused(corpus, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="tokenizer must be one of byte, bpe"):
        make(corpus, tmp_path, tokenizer="wordpiece")
    with pytest.raises(ValueError, match="bpe_vocab_size"):
        make(corpus, tmp_path, tokenizer="bpe", bpe_vocab_size=100)
    with pytest.raises(ValueError, match="val_fraction"):
        make(corpus, tmp_path, val_fraction=0.0)
    with pytest.raises(ValueError, match="the val split has"):
        make(corpus, tmp_path, seq_len=4096).setup()
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if `datasets` were not installed
    with pytest.raises(ImportError, match="pip install datasets"):
        TextDataModule(hf_dataset="wikitext", cache_dir=str(tmp_path / "cache")).setup()


def test_hugging_face_rows_become_the_token_stream(tmp_path, monkeypatch):
    rows = [{"text": f"{i}: {LINES[i % 4]}"} for i in range(300)]
    calls = []

    def load_dataset(path, name, split):
        calls.append((path, name, split))
        return rows

    monkeypatch.setitem(sys.modules, "datasets", SimpleNamespace(load_dataset=load_dataset))
    dm = TextDataModule(hf_dataset="some/corpus", hf_config="v1", hf_split="train", seq_len=32,
                        cache_dir=str(tmp_path / "cache"))
    dm.setup()
    assert calls[0] == ("some/corpus", "v1", "train")
    assert stream(dm).tobytes() == "".join(r["text"] for r in rows).encode()


@pytest.mark.parametrize("tokenizer", ["byte", "bpe"])
def test_perplexity_and_bits_per_byte_are_logged(corpus, tmp_path, tokenizer):
    dm = make(corpus, tmp_path, tokenizer=tokenizer, bpe_vocab_size=300, train_windows=16, max_eval_windows=8)
    model = LMTask(ModelConfig(mixer="attention", d_model=16, n_layers=1, vocab_size=dm.vocab_size), warmup_steps=1)
    trainer = L.Trainer(
        max_steps=4, val_check_interval=2, accelerator="cpu", callbacks=[TextMetrics()], enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, logger=L.pytorch.loggers.CSVLogger(tmp_path / "logs"),
        num_sanity_val_steps=0,
    )
    trainer.fit(model, dm)
    trainer.test(model, dm, verbose=False)
    rows = list(csv.DictReader(open(trainer.logger.log_dir + "/metrics.csv")))
    val = [r for r in rows if r.get("val/loss")]
    assert len(val) == 2
    for r in val:
        loss = float(r["val/loss"])
        assert float(r["val/ppl"]) == pytest.approx(math.exp(loss), rel=1e-5)
        assert float(r["val/bpb"]) == pytest.approx(loss / math.log(2) / dm.bytes_per_token, rel=1e-5)
    test = [r for r in rows if r.get("test/loss")][0]
    assert float(test["test/bpb"]) == pytest.approx(float(test["test/loss"]) / math.log(2) / dm.test_bytes_per_token)
    assert (dm.bytes_per_token == 1.0) == (tokenizer == "byte")


def test_text_metrics_give_no_bits_per_byte_where_the_data_has_no_bytes():
    from seqmix.train.data.induction import InductionDataModule

    dm = InductionDataModule(seq_len=16, vocab_size=8, num_train=8, num_val=8, num_test=8, batch_size=8)
    model = LMTask(ModelConfig(mixer="attention", d_model=16, n_layers=1, vocab_size=8))
    trainer = L.Trainer(accelerator="cpu", callbacks=[TextMetrics()], logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    (metrics,) = trainer.validate(model, dm, verbose=False)
    assert metrics["val/ppl"] == pytest.approx(math.exp(metrics["val/loss"]), rel=1e-5) and "val/bpb" not in metrics
