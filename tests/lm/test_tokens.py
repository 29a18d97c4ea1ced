"""Tokenizer round trip, the token file and its metadata, and bad input."""

import json

import numpy as np
import pytest

from imbalance.lm.tokenizer import load_tokenizer, tokenizer_hash, train_bpe
from imbalance.lm.tokens import TokenSplit, encode_corpus, open_token_file
from imbalance.zipf import frequency_buckets


def test_bpe_round_trip_and_size(corpus_file, tokenizer, tmp_path):
    """Byte-level BPE decodes back to the exact text, including characters absent from training."""
    assert tokenizer.get_vocab_size() == 512
    text = corpus_file.read_text()[:5000] + " naïve 東京 ✓\n"
    assert tokenizer.decode(tokenizer.encode(text).ids) == text
    saved = train_bpe(corpus_file, 300, out=tmp_path / "tok" / "tokenizer.json")
    again = load_tokenizer(tmp_path / "tok")  # the directory form
    assert tokenizer_hash(again) == tokenizer_hash(saved)
    assert again.encode(text).ids == saved.encode(text).ids


def test_token_file_matches_direct_encoding(corpus_file, tokenizer, token_file, tmp_path):
    """The memory-mapped ids are the line-by-line encoding of the corpus; the metadata counts them;
    a second call reads the cached file back (same path, nothing rewritten)."""
    lines = corpus_file.read_text().splitlines(keepends=True)
    direct = np.array([t for line in lines for t in tokenizer.encode(line, add_special_tokens=False).ids])
    ids = token_file.ids
    assert ids.dtype == np.uint16
    np.testing.assert_array_equal(np.asarray(ids, dtype=np.int64), direct)
    meta = json.loads(token_file.path.with_suffix(".json").read_text())
    assert meta["n_tokens"] == direct.size and meta["vocab_size"] == 512
    assert meta["n_types_seen"] == np.unique(direct).size
    assert tokenizer.decode(direct.tolist()) == corpus_file.read_text()
    mtime = token_file.path.stat().st_mtime_ns
    again = encode_corpus(corpus_file, tokenizer, token_file.path.parent)
    assert again.path == token_file.path and again.path.stat().st_mtime_ns == mtime
    assert open_token_file(token_file.path.with_suffix(".json")).meta == meta


def test_split_is_contiguous_and_counts_train_only(token_file, split):
    ids = np.asarray(token_file.ids, dtype=np.int64)
    n_train = split.train.size
    assert n_train + split.heldout.size == ids.size
    assert abs(split.heldout.size - 0.2 * ids.size) <= 1
    np.testing.assert_array_equal(split.token_counts, np.bincount(ids[:n_train], minlength=512))
    np.testing.assert_array_equal(split.buckets(), frequency_buckets(split.token_probs))
    w = split.windows("heldout").numpy()  # non-overlapping windows, in order
    np.testing.assert_array_equal(w.ravel(), ids[n_train:n_train + w.size])


def test_missing_and_empty_corpus(tmp_path, tokenizer):
    with pytest.raises(FileNotFoundError, match="no-such.txt"):
        train_bpe(tmp_path / "no-such.txt", 512)
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n")
    with pytest.raises(ValueError, match="empty"):
        train_bpe(empty, 512)
    with pytest.raises(ValueError, match="empty"):
        encode_corpus(empty, tokenizer, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
    one = tmp_path / "one.txt"
    one.write_text("a")
    with pytest.raises(ValueError, match="encodes to 1 tokens"):
        encode_corpus(one, tokenizer, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []  # the partial .bin.tmp was removed


def test_vocab_too_large_for_corpus_writes_nothing(tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("the cat sat on the mat. " * 20)
    out = tmp_path / "tok" / "tokenizer.json"
    with pytest.raises(ValueError, match="vocab_size=4096 is larger than the corpus"):
        train_bpe(small, 4096, out=out)
    assert not out.exists() and not out.with_name("tokenizer.json.tmp").exists()
    with pytest.raises(ValueError, match="vocab_size must be an integer"):
        train_bpe(small, 100)


def test_tokenizer_directory_without_tokenizer(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="holds no tokenizer"):
        load_tokenizer(tmp_path / "model")


def test_split_too_small(token_file):
    with pytest.raises(ValueError, match="context"):
        TokenSplit(token_file, context=token_file.n_tokens // 2)
