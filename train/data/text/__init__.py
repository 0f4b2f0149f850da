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

One concept a module: `discover` (the corpus's files), `tokenizers` (bytes, BPE), `cache` (the token file and its
windows), `datamodule` (TextDataModule: splits and loaders), `metrics` (TextMetrics: ppl and bits per byte).
"""

from .cache import FORMAT_VERSION, Windows, cache_key, write_tokens
from .datamodule import TextDataModule
from .discover import (
    READ_CHUNK,
    check_text_files,
    corpus_order,
    default_corpus,
    named_files,
    read_chunks,
    read_texts,
    resolve_paths,
    text_problem,
)
from .metrics import TextMetrics
from .tokenizers import TOKENIZERS, BPETokenizer, ByteTokenizer, bytes_to_unicode, token_dtype

__all__ = [
    "FORMAT_VERSION", "READ_CHUNK", "TOKENIZERS", "BPETokenizer", "ByteTokenizer", "TextDataModule", "TextMetrics",
    "Windows", "bytes_to_unicode", "cache_key", "check_text_files", "corpus_order", "default_corpus", "named_files",
    "read_chunks", "read_texts", "resolve_paths", "text_problem", "token_dtype", "write_tokens",
]
