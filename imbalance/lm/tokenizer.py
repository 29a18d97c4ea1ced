"""Tokenizers: a byte-level BPE trained on the user's corpus with Hugging Face ``tokenizers``
(GPT-2's scheme: every byte is a symbol, so no text is out of vocabulary), or an existing
``tokenizer.json`` / local Hugging Face tokenizer directory.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["train_bpe", "load_tokenizer", "tokenizer_hash", "file_sha256", "check_text_file", "EOS",
           "MIN_VOCAB", "MAX_VOCAB"]

EOS = "<|endoftext|>"
MIN_VOCAB = 257  # the 256 byte symbols and the end-of-text token
MAX_VOCAB = 65536


def check_text_file(path, name: str = "text") -> Path:
    """An existing, non-empty UTF-8 text file, or FileNotFoundError/ValueError naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{name}: no such file: {str(path)!r}")
    if not path.is_file():
        raise ValueError(f"{name} must be a text file, got a directory: {str(path)!r}")
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if not head.strip():
        raise ValueError(f"{name}={str(path)!r} is empty (no non-whitespace text)")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:  # not just a character cut at the end of the probe
            raise ValueError(f"{name}={str(path)!r} is not UTF-8 text ({e})") from None
    return path


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tokenizer_hash(tokenizer) -> str:
    """SHA-256 of the tokenizer's canonical JSON (vocabulary, merges, normalisation)."""
    return hashlib.sha256(tokenizer.to_str().encode()).hexdigest()


def train_bpe(text, vocab_size: int, *, out=None):
    """Train a byte-level BPE of exactly ``vocab_size`` types (257 ≤ vocab_size ≤ 65536,
    ``<|endoftext|>`` included) on the text file ``text``; saved as ``out`` (tokenizer.json)
    when given, atomically. ValueError when the corpus has too few distinct byte pairs to
    reach ``vocab_size`` (nothing is written then)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    path = check_text_file(text)
    if isinstance(vocab_size, bool) or int(vocab_size) != vocab_size or not MIN_VOCAB <= vocab_size <= MAX_VOCAB:
        raise ValueError(f"vocab_size must be an integer in [{MIN_VOCAB}, {MAX_VOCAB}] (256 bytes + end-of-text "
                         f"... 2^16), got vocab_size={vocab_size!r}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=int(vocab_size), special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([str(path)], trainer)
    got = tok.get_vocab_size()
    if got < vocab_size:
        raise ValueError(f"vocab_size={vocab_size} is larger than the corpus {str(path)!r} allows: byte-level BPE "
                         f"found only {got - MIN_VOCAB} merges (vocabulary {got}); use a larger corpus or "
                         f"vocab_size <= {got}")
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tok.save(str(tmp))
        tmp.replace(out)
    return tok


def load_tokenizer(path):
    """A ``tokenizers.Tokenizer`` from a tokenizer.json file, or a local Hugging Face tokenizer
    directory (tokenizer.json, or the files ``AutoTokenizer`` reads, e.g. vocab.json + merges.txt)."""
    from tokenizers import Tokenizer

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"tokenizer: no such file or directory: {str(path)!r}")
    if path.is_file():
        try:
            return Tokenizer.from_file(str(path))
        except Exception as e:
            raise ValueError(f"tokenizer={str(path)!r} is not a tokenizer.json file ({e})") from None
    if (path / "tokenizer.json").is_file():
        return load_tokenizer(path / "tokenizer.json")
    known = ("vocab.json", "tokenizer.model", "vocab.txt", "tokenizer_config.json")
    if not any((path / k).is_file() for k in known):
        raise FileNotFoundError(f"directory {str(path)!r} holds no tokenizer (none of tokenizer.json, "
                                f"{', '.join(known)})")
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(path))
    if not getattr(hf, "is_fast", False):
        raise ValueError(f"the tokenizer in {str(path)!r} has no fast (Rust) version to load")
    return hf.backend_tokenizer
