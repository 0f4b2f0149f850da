"""TextDataModule: a local (or Hugging Face) text corpus as seeded, position-split language-modelling windows."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
from torch import Tensor
from torch.utils.data import DataLoader

from ...checks import check_int
from ..batch import DataError
from ..resumable import train_loader
from .cache import Windows, cache_key, write_tokens
from .discover import check_text_files, corpus_order, named_files, read_texts, resolve_paths
from .tokenizers import TOKENIZERS, BPETokenizer, ByteTokenizer


class TextDataModule(L.LightningDataModule):
    """Language modelling on local text (default: the Python standard library's sources); byte-level or BPE.

    Exposes `vocab_size` (256, or `bpe_vocab_size`) and `bytes_per_token` (UTF-8 bytes per predicted token over the
    validation windows, 1.0 for bytes) so bits per byte = loss / ln 2 / bytes_per_token; `test_bytes_per_token` too."""

    def __init__(
        self,
        paths: str | list[str] | None = None,
        tokenizer: str = "byte",
        bpe_vocab_size: int = 4096,
        seq_len: int = 256,
        batch_size: int = 32,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        train_windows: int | None = None,
        max_eval_windows: int | None = None,
        cache_dir: str | None = None,
        hf_dataset: str | None = None,
        hf_config: str | None = None,
        hf_split: str = "train",
        hf_text_field: str = "text",
        seed: int = 0,
        num_workers: int = 0,
    ):
        """paths: files, directories or globs (None: the stdlib sources; ignored with hf_dataset); train_windows:
        random windows per training epoch (None: as many as fit the training tokens); max_eval_windows: cap on
        validation/test windows, spread evenly over the split (None: all)."""
        super().__init__()
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {', '.join(TOKENIZERS)}, got {tokenizer!r}")
        if tokenizer == "bpe" and (not isinstance(bpe_vocab_size, int) or bpe_vocab_size < 257):
            raise ValueError(f"bpe_vocab_size must be an integer > 256 (the byte alphabet), got {bpe_vocab_size!r}")
        for name, value in (("seq_len", seq_len), ("batch_size", batch_size)):
            check_int(name, value)
        for name, value in (("train_windows", train_windows), ("max_eval_windows", max_eval_windows)):
            check_int(name, value, optional=True)
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0 < value < 1:
                raise ValueError(f"{name} must be in (0, 1), got {value!r}")
        if val_fraction + test_fraction >= 1:
            raise ValueError(f"val_fraction + test_fraction must leave training data, got {val_fraction + test_fraction}")
        self.save_hyperparameters()
        self.paths, self.tokenizer_name, self.bpe_vocab_size = paths, tokenizer, bpe_vocab_size
        self.seq_len, self.batch_size, self.seed, self.num_workers = seq_len, batch_size, seed, num_workers
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.train_windows, self.max_eval_windows = train_windows, max_eval_windows
        self.hf = dict(path=hf_dataset, name=hf_config, split=hf_split, field=hf_text_field) if hf_dataset else None
        self.cache_dir = Path(cache_dir or os.environ.get("SEQMIX_CACHE", "~/.cache/seqmix")).expanduser() / "text"
        self.vocab_size = 256 if tokenizer == "byte" else bpe_vocab_size
        self.tokenizer: ByteTokenizer | BPETokenizer | None = None
        self.meta: dict | None = None
        self.bin_path: Path | None = None
        self.splits: dict[str, Windows] = {}
        self.bytes_per_token = self.test_bytes_per_token = 1.0
        if paths is not None and self.hf is None:
            self._check_paths(paths)

    @staticmethod
    def _check_paths(paths: str | list[str]) -> None:
        """Missing files, and named or all-empty ones, are DataErrors now, before anything runs."""
        try:
            files = resolve_paths(paths)
        except FileNotFoundError as err:
            raise DataError(str(err)) from None
        for path in sorted(named_files(paths)):
            if path.stat().st_size == 0:
                raise DataError(f"text corpus: {path} is empty")
        if sum(p.stat().st_size for p in files) == 0:
            raise DataError(f"text corpus: the {len(files)} file(s) in {paths!r} are all empty")

    # ---- corpus and cache -----------------------------------------------------------------------------------------

    def _sources(self) -> tuple[list[Path], dict]:
        """The files to read (in corpus order) and what identifies the corpus in the cache key."""
        if self.hf is not None:
            return [], {"hf": self.hf, "fingerprint": getattr(self._hf_dataset(), "_fingerprint", None)}
        files = corpus_order(resolve_paths(self.paths))
        return files, {"files": [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files]}

    def _hf_dataset(self):
        try:
            import datasets
        except ImportError as e:
            raise ImportError(
                f"hf_dataset={self.hf['path']!r} needs the Hugging Face `datasets` package (pip install datasets) and a "
                "network or a local copy; without it, give local files in `paths`"
            ) from e
        return datasets.load_dataset(self.hf["path"], self.hf["name"], split=self.hf["split"])

    def _texts(self, files: list[Path]) -> Iterator[str]:
        if self.hf is None:
            for path in files:
                yield from read_texts(path)
        else:
            field = self.hf["field"]
            for row in self._hf_dataset():
                yield row[field]

    def prepare_data(self) -> None:
        """Tokenise the corpus into the cache unless it is there already (run once, on one process); a corpus too
        short for seq_len is a DataError here, before the trainer sets up (and creates the run directory)."""
        meta = json.loads(self._tokenise().read_text())
        self._check_split_sizes(meta["num_tokens"])

    def _tokenise(self) -> Path:
        """The cache entry's sidecar, tokenising the corpus into the cache first unless it is there already."""
        files, identity = self._sources()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        meta_path = self.cache_dir / f"{cache_key(self.tokenizer_name, self.bpe_vocab_size, identity)}.json"
        if meta_path.exists() and meta_path.with_suffix(".bin").exists():
            return meta_path
        if self.hf is None:
            files = check_text_files(files, named_files(self.paths))
        write_tokens(meta_path, self.tokenizer_name, self.vocab_size, identity, lambda: self._texts(files),
                     byte_files=files if self.hf is None else None)
        return meta_path

    # ---- splits and loaders ---------------------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        """Open the cached tokens (tokenising first if needed) and cut them into train / val / test windows."""
        if self.splits:
            return
        meta_path = self._tokenise()
        self.meta, self.bin_path = json.loads(meta_path.read_text()), meta_path.with_suffix(".bin")
        if self.tokenizer_name == "byte":
            self.tokenizer = ByteTokenizer()
        else:
            self.tokenizer = BPETokenizer.load(meta_path.parent / self.meta["tokenizer_file"])
        self._check_split_sizes(self.meta["num_tokens"])
        bounds = self.split_bounds()
        n = self.meta["num_tokens"]
        train_lo, train_hi = bounds["train"]
        starts = {
            "train": np.arange(train_lo, train_hi - self.seq_len),  # every window start; sampled at random
            "val": self._eval_starts(*bounds["val"]),
            "test": self._eval_starts(*bounds["test"]),
        }
        self.splits = {s: Windows(self.bin_path, self.meta["dtype"], n, st, self.seq_len) for s, st in starts.items()}
        lengths = self.tokenizer.token_bytes()
        self.bytes_per_token = self._bytes_per_token(self.splits["val"], lengths)
        self.test_bytes_per_token = self._bytes_per_token(self.splits["test"], lengths)

    def _check_split_sizes(self, num_tokens: int) -> None:
        for split, (lo, hi) in self.split_bounds(num_tokens).items():
            if hi - lo < self.seq_len + 1:
                fix = "smaller val_fraction / test_fraction" if split == "train" else f"a larger {split}_fraction"
                raise DataError(
                    f"text corpus: the {split} split has {hi - lo} tokens, fewer than seq_len + 1 = {self.seq_len + 1} "
                    f"(corpus: {num_tokens} tokens); use a larger corpus, a shorter seq_len or {fix}"
                )

    def split_bounds(self, num_tokens: int | None = None) -> dict[str, tuple[int, int]]:
        """Token ranges [lo, hi) of train, val and test (of the cached corpus, or of `num_tokens`): contiguous, in that
        order, non-overlapping."""
        n = self.meta["num_tokens"] if num_tokens is None else num_tokens
        n_val, n_test = int(n * self.val_fraction), int(n * self.test_fraction)
        n_train = n - n_val - n_test
        return {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, n)}

    def _eval_starts(self, lo: int, hi: int) -> np.ndarray:
        starts = lo + self.seq_len * np.arange((hi - lo - 1) // self.seq_len)
        if self.max_eval_windows is not None and len(starts) > self.max_eval_windows:
            starts = starts[np.linspace(0, len(starts) - 1, self.max_eval_windows).round().astype(np.int64)]
        return starts

    def _bytes_per_token(self, windows: Windows, lengths: np.ndarray) -> float:
        """UTF-8 bytes per predicted token over exactly the windows' label positions."""
        if self.tokenizer_name == "byte":
            return 1.0
        tokens = np.memmap(windows.path, dtype=windows.dtype, mode="r", shape=(windows.num_tokens,))
        total = sum(int(lengths[tokens[s + 1 : s + 1 + self.seq_len]].sum()) for s in windows.starts)
        return total / (len(windows.starts) * self.seq_len)

    def bits_per_byte(self, loss: float | Tensor, split: str = "val") -> float | Tensor:
        """Bits per byte from a mean cross-entropy in nats per token: loss / ln 2 / bytes per token."""
        per_token = self.bytes_per_token if split == "val" else self.test_bytes_per_token
        return loss / math.log(2) / per_token

    def train_dataloader(self) -> DataLoader:
        """Random windows, drawn with replacement anew each epoch (seeded by `seed` and the epoch), resumable
        mid-epoch, sharded under DDP."""
        self.setup()
        train = self.splits["train"]
        return train_loader(self, train, self.batch_size, seed=self.seed, num_workers=self.num_workers,
                            num_samples=self.train_windows or max(1, len(train) // self.seq_len))

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(self.splits["val"], batch_size=self.batch_size, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(self.splits["test"], batch_size=self.batch_size, num_workers=self.num_workers)
