"""The two tokenizers of real text: UTF-8 bytes, and byte-level BPE trained on the corpus."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

TOKENIZERS = ("byte", "bpe")


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
