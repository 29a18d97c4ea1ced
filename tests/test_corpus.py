import numpy as np
import pytest

from imbalance import zipf_pmf
from imbalance.corpus import bigram_counts, tokenize_words, zipf_markov_stream, zipf_transition_matrix


def test_tokenize_keeps_the_most_frequent_types_and_maps_the_rest_to_unk():
    ids, vocab = tokenize_words("B a b c b a d, d d!", 4)
    # counts: b 3, d 3 (b first), a 2, c 1, ',' 1, '!' 1
    assert vocab == ["b", "d", "a", "<unk>"]
    assert [vocab[i] for i in ids] == ["b", "a", "b", "<unk>", "b", "a", "d", "<unk>", "d", "d", "<unk>"]


def test_bigram_counts_count_consecutive_pairs():
    ids = np.array([0, 1, 1, 2, 0, 1])
    C = bigram_counts(ids, 3).toarray()
    expect = np.zeros((3, 3))
    for a, b in zip(ids[:-1], ids[1:]):
        expect[a, b] += 1
    np.testing.assert_array_equal(C, expect)


@pytest.mark.parametrize("sharpness", [0.0, 3.0])
def test_transition_matrix_has_exact_zipf_stationary_law(sharpness):
    T = zipf_transition_matrix(60, s=1.2, sharpness=sharpness, seed=3)
    pi = zipf_pmf(60, 1.2)
    np.testing.assert_allclose(T.sum(1), 1.0, rtol=1e-13)
    # the stationary law, by power iteration from uniform (independent of the construction)
    mu = np.full(60, 1 / 60)
    for _ in range(5000):
        mu = mu @ T
    np.testing.assert_allclose(mu, pi, rtol=1e-8)
    if sharpness == 0:
        np.testing.assert_allclose(T, np.tile(pi, (60, 1)), rtol=1e-10)


def test_stream_marginal_is_zipf_within_sampling_error():
    V, n = 40, 200_000
    ids = zipf_markov_stream(V, n, s=1.1, sharpness=2.0, seed=1)
    T = zipf_transition_matrix(V, s=1.1, sharpness=2.0, seed=1)
    pi = zipf_pmf(V, 1.1)
    lam2 = np.sort(np.abs(np.linalg.eigvals(T)))[-2]
    # Markov-chain variance of a frequency: π(1−π)/n inflated by at most (1+|λ2|)/(1−|λ2|)
    sd = np.sqrt(pi * (1 - pi) / n * (1 + lam2) / (1 - lam2))
    freq = np.bincount(ids, minlength=V) / n
    assert np.all(np.abs(freq - pi) <= 5 * sd)


@pytest.mark.parametrize("call,name", [
    (lambda: tokenize_words("", 10), "no tokens"), (lambda: tokenize_words("a b", 1), "vocab_size"),
    (lambda: bigram_counts([0, 5], 3), "ids"), (lambda: bigram_counts([0.5, 1.0], 3), "ids"),
    (lambda: zipf_transition_matrix(10, sharpness=-1.0), "sharpness"), (lambda: zipf_markov_stream(1, 10), "V"),
])
def test_rejects_bad_input(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_successor_stream_is_seeded_like_the_markov_stream():
    """``seed`` is an int (as for zipf_markov_stream) or a Generator; both give the same stream,
    ``rng`` (the earlier name) too; a bad seed is refused by name."""
    from imbalance.corpus import zipf_successor_stream

    a = zipf_successor_stream(40, 500, seed=3)
    assert np.array_equal(a, zipf_successor_stream(40, 500, np.random.default_rng(3)))
    assert np.array_equal(a, zipf_successor_stream(40, 500, rng=np.random.default_rng(3)))
    assert not np.array_equal(a, zipf_successor_stream(40, 500, seed=4))
    for bad in (-1, 1.5, True, "0"):
        with pytest.raises(ValueError, match="seed"):
            zipf_successor_stream(40, 500, seed=bad)
