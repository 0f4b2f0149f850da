"""The token cache: a corpus tokenised once into `<key>.bin` plus its `<key>.json` sidecar, read back as windows."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ...io import atomic_open, atomic_write
from .discover import read_chunks
from .tokenizers import BPETokenizer, ByteTokenizer, token_dtype

FORMAT_VERSION = 2  # 2: files that are not UTF-8 text are left out of a corpus found in folders or globs


def cache_key(tokenizer: str, bpe_vocab_size: int, identity: dict) -> str:
    """The cache entry's name: a hash of the format version, the tokenizer and what identifies the corpus."""
    spec = {"v": FORMAT_VERSION, "tokenizer": tokenizer, "corpus": identity}
    if tokenizer == "bpe":
        spec["bpe_vocab_size"] = bpe_vocab_size
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]


def write_tokens(meta_path: Path, tokenizer: str, vocab_size: int, identity: dict, texts: Callable[[], Iterator[str]],
                 byte_files: list[Path] | None = None) -> None:
    """Tokenise `texts()` (or copy `byte_files` byte-exact, for the byte tokenizer) into the entry `meta_path` names.

    The token file and a BPE tokenizer lie beside `meta_path` (`.bin`, `.tokenizer.json`); the sidecar is written
    last, so its presence marks a complete entry."""
    bin_path, tok_path = meta_path.with_suffix(".bin"), meta_path.with_suffix(".tokenizer.json")
    if tokenizer == "byte":
        encoder: ByteTokenizer | BPETokenizer = ByteTokenizer()
    else:
        encoder = BPETokenizer.train(texts(), vocab_size)
        encoder.save(tok_path)
    dtype = token_dtype(vocab_size)
    num_tokens = num_bytes = 0
    with atomic_open(bin_path, "wb") as out:
        if tokenizer == "byte" and byte_files is not None:  # bytes are their own tokens: copy, byte-exact
            for path in byte_files:
                for chunk in read_chunks(path):
                    out.write(chunk)
                    num_tokens += len(chunk)
            num_bytes = num_tokens
        else:
            for text in texts():
                ids = np.asarray(encoder.encode(text), dtype=dtype)
                out.write(ids.tobytes())
                num_tokens, num_bytes = num_tokens + len(ids), num_bytes + len(text.encode("utf-8"))
    meta = {
        "format_version": FORMAT_VERSION, "tokenizer": tokenizer, "vocab_size": vocab_size,
        "dtype": dtype.name, "num_tokens": num_tokens, "num_bytes": num_bytes, "corpus": identity,
        "tokenizer_file": tok_path.name if tokenizer == "bpe" else None,
    }
    atomic_write(meta_path, json.dumps(meta, indent=1))


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
