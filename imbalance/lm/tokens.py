"""Token files: a corpus encoded once into a flat memory-mapped array (uint16 when every id
fits, uint32 otherwise) with a small JSON metadata file, as nanoGPT's ``train.bin``; cached
by the corpus's and the tokenizer's SHA-256, so a second run reads it back. Written
atomically: the metadata file appears last, so a half-written token file is never used.

:class:`TokenSplit` splits the stream once, contiguously (the first ``1 − heldout_fraction``
trains, the rest is held out, as ``imbalance.sim.TokenStreamTask``); the token counts of the
training split define the frequencies π and the buckets.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._progress import progress_bar
from .._validate import as_fraction, as_positive_int
from ..zipf import frequency_buckets
from .tokenizer import check_text_file, file_sha256, tokenizer_hash

__all__ = ["TokenFile", "cached_token_file", "encode_corpus", "open_token_file", "TokenSplit", "FORMAT"]

FORMAT = "imbalance.lm.tokens/1"
_LINES_PER_BATCH = 4096


@dataclass(frozen=True)
class TokenFile:
    path: Path  # the .bin file
    meta: dict

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @property
    def n_tokens(self) -> int:
        return int(self.meta["n_tokens"])

    @property
    def ids(self) -> np.memmap:
        return np.memmap(self.path, dtype=self.meta["dtype"], mode="r", shape=(self.n_tokens,))  # (N,)


def _dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def _atomic_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def open_token_file(path) -> TokenFile:
    """A token file written by :func:`encode_corpus` (``path``: its .bin or .json)."""
    path = Path(path)
    meta_path, bin_path = path.with_suffix(".json"), path.with_suffix(".bin")
    if not meta_path.is_file() or not bin_path.is_file():
        raise FileNotFoundError(f"no token file at {str(bin_path)!r} (needs both .bin and .json)")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{str(meta_path)!r} is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{str(meta_path)!r} is not an imbalance token-file metadata file")
    expected = int(meta["n_tokens"]) * np.dtype(meta["dtype"]).itemsize
    if bin_path.stat().st_size != expected:
        raise ValueError(f"{str(bin_path)!r} holds {bin_path.stat().st_size} bytes, its metadata says {expected}")
    return TokenFile(bin_path, meta)


def encode_corpus(text, tokenizer, cache_dir, *, progress: bool = False) -> TokenFile:
    """Encode the text file ``text`` line by line (newlines kept) with a ``tokenizers.Tokenizer``
    into ``cache_dir/tokens-<corpus sha>-<tokenizer sha>.bin`` + ``.json``; read back if there."""
    path = check_text_file(text)
    stem, corpus_sha, tok_sha = _stem(path, tokenizer, cache_dir)
    if stem.with_suffix(".json").exists():
        return open_token_file(stem.with_suffix(".bin"))
    stem.parent.mkdir(parents=True, exist_ok=True)
    V = tokenizer.get_vocab_size(with_added_tokens=True)
    dtype = _dtype_for(V)
    tmp = stem.with_suffix(".bin.tmp")
    n_tokens = n_lines = 0
    counts = np.zeros(V, dtype=np.int64)
    try:
        with open(path, encoding="utf-8") as f, open(tmp, "wb") as out, \
                progress_bar(total=path.stat().st_size, unit="B", unit_scale=True, desc="encode",
                             enabled=progress) as bar:
            while lines := f.readlines(1 << 20):
                for i in range(0, len(lines), _LINES_PER_BATCH):
                    enc = tokenizer.encode_batch(lines[i:i + _LINES_PER_BATCH], add_special_tokens=False)
                    ids = np.fromiter((t for e in enc for t in e.ids), dtype=np.int64)  # (n,)
                    if ids.size and ids.max() >= V:
                        raise ValueError(f"tokenizer produced id {ids.max()} >= its vocabulary size {V}")
                    counts += np.bincount(ids, minlength=V)
                    out.write(ids.astype(dtype).tobytes())
                    n_tokens += ids.size
                n_lines += len(lines)
                bar.update(sum(len(s.encode()) for s in lines))
            out.flush()
            os.fsync(out.fileno())
        if n_tokens < 2:
            raise ValueError(f"text={str(path)!r} encodes to {n_tokens} tokens; need at least 2")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, stem.with_suffix(".bin"))
    meta = {"format": FORMAT, "vocab_size": V, "dtype": dtype.name, "n_tokens": n_tokens, "n_lines": n_lines,
            "n_bytes": path.stat().st_size, "n_types_seen": int((counts > 0).sum()), "corpus": str(path),
            "corpus_sha256": corpus_sha, "tokenizer_sha256": tok_sha}
    _atomic_json(stem.with_suffix(".json"), meta)
    return TokenFile(stem.with_suffix(".bin"), meta)


def _stem(path, tokenizer, cache_dir):
    """(cache_dir/tokens-<corpus sha>-<tokenizer sha> without suffix, corpus SHA-256, tokenizer SHA-256)."""
    corpus_sha, tok_sha = file_sha256(path), tokenizer_hash(tokenizer)
    return Path(cache_dir) / f"tokens-{corpus_sha[:16]}-{tok_sha[:16]}", corpus_sha, tok_sha


def cached_token_file(text, tokenizer, cache_dir) -> TokenFile | None:
    """The token file :func:`encode_corpus` wrote for this text and tokenizer under ``cache_dir``, or None."""
    stem = _stem(check_text_file(text), tokenizer, cache_dir)[0]
    return open_token_file(stem.with_suffix(".bin")) if stem.with_suffix(".json").exists() else None


class TokenSplit:
    """A contiguous train/held-out split of a token file, with windows of ``context + 1`` tokens.

    ``token_counts``/``token_probs``: counts and frequencies π of the training split (a type seen
    only in the held-out split has π = 0 and no bucket). ``sample`` draws training windows at
    uniform random offsets from an explicit ``torch.Generator``; ``windows`` cuts a split into
    non-overlapping windows for evaluation.
    """

    def __init__(self, token_file: TokenFile, context: int, heldout_fraction: float = 0.1):
        self.token_file = token_file
        self.vocab_size = token_file.vocab_size
        self.context = as_positive_int(context, "context")
        frac = as_fraction(heldout_fraction, "heldout_fraction")
        ids = token_file.ids  # (N,)
        n_held = round(frac * ids.size)
        n_train = ids.size - n_held
        if min(n_train, n_held) < 2 * (self.context + 1):
            raise ValueError(f"the token file holds {ids.size} tokens: heldout_fraction={frac!r} leaves {n_train} "
                             f"training and {n_held} held-out tokens; each split needs at least 2 windows of "
                             f"context + 1 = {self.context + 1}")
        self.heldout_fraction = frac
        self.train, self.heldout = ids[:n_train], ids[n_train:]  # (n_train,), (n_held,)
        counts = np.zeros(self.vocab_size, dtype=np.int64)
        for i in range(0, n_train, 1 << 24):
            counts += np.bincount(self.train[i:i + (1 << 24)], minlength=self.vocab_size)
        self.token_counts = counts  # (V,)
        self.token_probs = counts / counts.sum()  # (V,)

    def buckets(self, scheme: str = "log3", n_groups: int = 10) -> np.ndarray:
        return frequency_buckets(self.token_probs, scheme=scheme, n_groups=n_groups)

    def sample(self, gen: torch.Generator, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        T = self.context
        start = torch.randint(self.train.size - T - 1, (batch,), generator=gen).numpy()  # (B,)
        x = torch.from_numpy(self.train[start[:, None] + np.arange(T + 1)].astype(np.int64))  # (B, T+1)
        return x[:, :-1], x[:, 1:]

    def windows(self, split: str, max_tokens: int | None = None) -> torch.Tensor:
        """Non-overlapping windows (n, context + 1) of ``"train"`` or ``"heldout"``, the first
        ``max_tokens`` tokens of the split at most."""
        ids = {"train": self.train, "heldout": self.heldout}.get(split)
        if ids is None:
            raise ValueError(f"split must be 'train' or 'heldout', got split={split!r}")
        if max_tokens is not None:
            ids = ids[: max(int(max_tokens), self.context + 1)]
        n = ids.size // (self.context + 1)
        return torch.from_numpy(ids[: n * (self.context + 1)].astype(np.int64)).view(n, self.context + 1)
