"""Real-text language modelling over local files: byte-level or BPE tokens, memory-mapped, split by position.

The corpus (files, directories or globs; by default the Python standard library's own `*.py` sources, which every
machine with Python has) is tokenised once into a flat token file `<key>.bin` (uint8 / uint16 / uint32) plus a JSON
sidecar `<key>.json` in a cache directory, then read through `np.memmap`, so corpora larger than RAM work. The cache
key hashes the file list (paths, sizes, modification times), the tokenizer and the format version: any change
re-tokenises, anything else reuses the file.

Split: files are concatenated in a fixed pseudo-random order (sorted by a hash of their path, so the held-out part is
a sample of files, not the alphabetically last ones); the token stream is then cut by position into
train = [0, n_train), val = [n_train, n_train + n_val), test = [n_train + n_val, n). Every window lies inside one
split, so no token position is in two splits. Training draws random windows of seq_len + 1 tokens (inputs are the
first seq_len, labels the last seq_len); validation and test use consecutive non-overlapping windows.
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import json
import math
import os
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..checks import check_int
from ..io import atomic_open, atomic_write
from .batch import DataError
from .resumable import train_loader

FORMAT_VERSION = 2  # 2: files that are not UTF-8 text are left out of a corpus found in folders or globs
TOKENIZERS = ("byte", "bpe")
READ_CHUNK = 1 << 24  # bytes read (and tokenised) at a time, so no file has to fit in memory at once


def default_corpus() -> list[Path]:
    """The Python standard library's own source files (`*.py` under sysconfig's stdlib path, no site-packages)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if p.is_file() and not {"site-packages", "dist-packages"} & set(p.parts))


def resolve_paths(paths: str | Iterable[str] | None) -> list[Path]:
    """Expand files, directories (every file below, recursively) and globs into a de-duplicated list of files."""
    if paths is None:
        return default_corpus()
    found: set[Path] = set()
    for entry in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        entry = os.path.expanduser(str(entry))
        path = Path(entry)
        if path.is_file():
            found.add(path.resolve())
        elif path.is_dir():
            found.update(p.resolve() for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        elif glob.has_magic(entry):
            matches = [Path(p).resolve() for p in glob.glob(entry, recursive=True) if Path(p).is_file()]
            if not matches:
                raise FileNotFoundError(f"text corpus: the glob {entry!r} matches no file")
            found.update(matches)
        else:
            raise FileNotFoundError(f"text corpus: {entry!r} is not a file, a directory or a glob that matches files")
    if not found:
        raise FileNotFoundError(f"text corpus: no files found in {paths!r}")
    return sorted(found)


def named_files(paths: str | Iterable[str] | None) -> set[Path]:
    """The entries of `paths` that name a file themselves (not a folder or a glob), resolved."""
    if paths is None:
        return set()
    entries = [paths] if isinstance(paths, (str, os.PathLike)) else paths
    return {Path(os.path.expanduser(str(e))).resolve() for e in entries if Path(os.path.expanduser(str(e))).is_file()}


def text_problem(path: Path) -> str | None:
    """Why a file is not UTF-8 text (a NUL byte, or bytes that are not UTF-8, with the offset), or None."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0
    for chunk in read_chunks(path):
        nul = chunk.find(b"\0")
        if nul >= 0:
            return f"a NUL byte at byte {offset + nul}: binary data"
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError as err:
            return f"bytes that are not UTF-8 at byte {max(0, offset + err.start)}"
        offset += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return "a UTF-8 sequence cut off at the end"
    return None


def check_text_files(files: list[Path], named: set[Path]) -> list[Path]:
    """The files that are UTF-8 text. A file named in `paths` that is not is a DataError; one found in a folder or
    glob is left out with a warning; a corpus with nothing left is a DataError."""
    kept, skipped = [], []
    for path in files:
        problem = text_problem(path)
        if problem is None:
            kept.append(path)
        elif path in named:
            raise DataError(f"text corpus: {path} is not UTF-8 text ({problem}); give text files (convert other "
                            "encodings to UTF-8, e.g. with iconv)")
        else:
            skipped.append(f"{path} ({problem})")
    if skipped:
        rank_zero_warn(f"text corpus: left out {len(skipped)} file(s) that are not UTF-8 text: {'; '.join(skipped[:5])}"
                       + (" ..." if len(skipped) > 5 else ""))
    if files and not kept:
        raise DataError(f"text corpus: none of the {len(files)} file(s) is UTF-8 text, e.g. {skipped[0]}")
    return kept


def corpus_order(files: list[Path]) -> list[Path]:
    """A fixed pseudo-random order (by a hash of each path) so a positional split holds out a sample of files."""
    return sorted(files, key=lambda p: hashlib.sha1(str(p).encode()).hexdigest())


def bytes_to_unicode() -> dict[int, str]:
    """The byte -> printable character table of byte-level BPE (printable bytes map to themselves)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type that holds every token id."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    raise ValueError(f"vocab_size={vocab_size} does not fit in uint32")


def read_chunks(path: Path) -> Iterator[bytes]:
    """A file's bytes, READ_CHUNK at a time."""
    with open(path, "rb") as f:
        while chunk := f.read(READ_CHUNK):
            yield chunk


def read_texts(path: Path) -> Iterator[str]:
    """A file as text (UTF-8, undecodable bytes replaced), in pieces cut at line ends."""
    carry = b""
    for chunk in read_chunks(path):
        chunk = carry + chunk
        cut = chunk.rfind(b"\n") + 1  # never split a multi-byte character: cut after a newline
        chunk, carry = chunk[:cut], chunk[cut:]
        if chunk:
            yield chunk.decode("utf-8", errors="replace")
    if carry:
        yield carry.decode("utf-8", errors="replace")


class ByteTokenizer:
    """Identity over UTF-8 bytes: 256 ids, one token per byte."""

    name, vocab_size = "byte", 256

    def encode(self, text: str | bytes) -> list[int]:
        """Token ids of a text (its UTF-8 bytes)."""
        return list(text.encode("utf-8") if isinstance(text, str) else text)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of token ids (invalid UTF-8 replaced)."""
        return bytes(ids).decode("utf-8", errors="replace")

    def token_bytes(self) -> np.ndarray:
        """Bytes of every token id: all 1."""
        return np.ones(256, dtype=np.int64)


class BPETokenizer:
    """Byte-level BPE (the `tokenizers` package) trained on the corpus; every byte is a base token, so nothing is
    out of vocabulary."""

    name = "bpe"

    def __init__(self, tokenizer):
        self.tokenizer, self.vocab_size = tokenizer, tokenizer.get_vocab_size()

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> BPETokenizer:
        """Learn merges up to vocab_size tokens from the texts."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
        )
        tokenizer.train_from_iterator(texts, trainer=trainer)
        return cls(tokenizer)

    @classmethod
    def load(cls, path: Path) -> BPETokenizer:
        """Read a tokenizer saved with `save`."""
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))

    def save(self, path: Path) -> None:
        """Write the tokenizer as JSON."""
        self.tokenizer.save(str(path))

    def encode(self, text: str) -> list[int]:
        """Token ids of a text."""
        return self.tokenizer.encode(text).ids

    def decode(self, ids: Iterable[int]) -> str:
        """The text of token ids."""
        return self.tokenizer.decode(list(ids))

    def token_bytes(self) -> np.ndarray:
        """How many UTF-8 bytes every token id stands for (byte-level tokens map back to bytes exactly)."""
        to_byte = {c: b for b, c in bytes_to_unicode().items()}
        lengths = np.zeros(self.vocab_size, dtype=np.int64)
        for token, i in self.tokenizer.get_vocab().items():
            lengths[i] = sum(1 for c in token if c in to_byte)
        return lengths


class Windows(Dataset):
    """Windows of seq_len + 1 tokens from a token file, given by start offset; opens the memmap lazily per process."""

    def __init__(self, path: Path, dtype: str, num_tokens: int, starts: np.ndarray, seq_len: int):
        self.path, self.dtype, self.num_tokens, self.starts, self.seq_len = path, dtype, num_tokens, starts, seq_len
        self._tokens: np.ndarray | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tokens": None}  # workers reopen the memmap instead of pickling its contents

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        if self._tokens is None:
            self._tokens = np.memmap(self.path, dtype=self.dtype, mode="r", shape=(self.num_tokens,))
        start = int(self.starts[i])
        window = torch.from_numpy(self._tokens[start : start + self.seq_len + 1].astype(np.int64))
        return {"input_ids": window[:-1], "labels": window[1:]}


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

    def _key(self, identity: dict) -> str:
        spec = {"v": FORMAT_VERSION, "tokenizer": self.tokenizer_name, "corpus": identity}
        if self.tokenizer_name == "bpe":
            spec["bpe_vocab_size"] = self.bpe_vocab_size
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]

    def prepare_data(self) -> None:
        """Tokenise the corpus into the cache unless it is there already (run once, on one process); a corpus too
        short for seq_len is a DataError here, before the trainer sets up (and creates the run directory)."""
        meta = json.loads(self._tokenise().read_text())
        self._check_split_sizes(meta["num_tokens"])

    def _tokenise(self) -> Path:
        files, identity = self._sources()
        key = self._key(identity)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        bin_path, meta_path = self.cache_dir / f"{key}.bin", self.cache_dir / f"{key}.json"
        tok_path = self.cache_dir / f"{key}.tokenizer.json"
        if meta_path.exists() and bin_path.exists():
            return meta_path
        if self.hf is None:
            files = check_text_files(files, named_files(self.paths))
        if self.tokenizer_name == "byte":
            tokenizer = ByteTokenizer()
        else:
            tokenizer = BPETokenizer.train(self._texts(files), self.bpe_vocab_size)
            tokenizer.save(tok_path)
        dtype = token_dtype(self.vocab_size)
        num_tokens = num_bytes = 0
        with atomic_open(bin_path, "wb") as out:
            if self.tokenizer_name == "byte" and self.hf is None:  # bytes are their own tokens: copy, byte-exact
                for path in files:
                    for chunk in read_chunks(path):
                        out.write(chunk)
                        num_tokens += len(chunk)
                num_bytes = num_tokens
            else:
                for text in self._texts(files):
                    ids = np.asarray(tokenizer.encode(text), dtype=dtype)
                    out.write(ids.tobytes())
                    num_tokens, num_bytes = num_tokens + len(ids), num_bytes + len(text.encode("utf-8"))
        meta = {
            "format_version": FORMAT_VERSION, "tokenizer": self.tokenizer_name, "vocab_size": self.vocab_size,
            "dtype": dtype.name, "num_tokens": num_tokens, "num_bytes": num_bytes, "corpus": identity,
            "tokenizer_file": tok_path.name if self.tokenizer_name == "bpe" else None,
        }
        atomic_write(meta_path, json.dumps(meta, indent=1))  # written last: its presence marks a complete cache entry
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
