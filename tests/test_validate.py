"""The input checks: every refusal is a ValueError naming the parameter and the offending value."""

import numpy as np
import pytest
import scipy.sparse as sp

from imbalance import _validate as V


@pytest.mark.parametrize("call,needles", [
    (lambda: V.as_lams([0.1, np.nan], "lam_w"), ["lam_w", "nan"]),
    (lambda: V.as_lams(-2.0), ["lam", "-2.0"]),
    (lambda: V.as_lams("0.1"), ["lam", "'0.1'"]),
    (lambda: V.as_lams(1 + 1j), ["lam", "1j"]),
    (lambda: V.as_lams([[0.1]]), ["lam", "(1, 1)"]),
    (lambda: V.as_lams([]), ["lam", "[]"]),
    (lambda: V.as_lams(0.0), ["lam", "0.0"]),
    (lambda: V.as_distribution([0.5, -0.5, 1.0]), ["pi[1]", "-0.5"]),
    (lambda: V.as_distribution([0.3, 0.3]), ["pi", "sum=0.6"]),
    (lambda: V.as_distribution([1e308, 1e308]), ["pi", "sum=inf"]),
    (lambda: V.as_frequencies([1.0, np.inf], "pi"), ["pi[1]", "inf"]),
    (lambda: V.as_frequencies([-1.0, 2.0], "counts"), ["counts[0]", "-1.0"]),
    (lambda: V.as_frequencies([0.0, 0.0]), ["pi", "[0.0, 0.0]"]),
    (lambda: V.as_frequencies([1.0, 2.0], size=3), ["pi", "(3,)", "(2,)"]),
    (lambda: V.as_frequencies(np.array([1 + 1j, 1.0])), ["pi", "1.+1.j"]),
    (lambda: V.as_positive_int(2.5, "K"), ["K", "2.5"]),
    (lambda: V.as_positive_int(0, "K"), ["K", "0"]),
    (lambda: V.as_real("x", "q"), ["q", "'x'"]),
    (lambda: V.as_count_matrix(np.array([[1.0, -2.0], [0.0, 1.0]])), ["counts", "-2.0"]),
    (lambda: V.as_count_matrix(np.array([[1e308, 1e308], [1e308, 1.0]])), ["counts", "sum=inf"]),
    (lambda: V.as_count_matrix(sp.csr_matrix(np.eye(2, dtype=complex))), ["counts", "complex"]),
])
def test_refusals_name_the_parameter_and_the_value(call, needles):
    with pytest.raises(ValueError) as info:
        call()
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


def test_huge_counts_are_normalised_without_overflow():
    np.testing.assert_array_equal(V.as_frequencies([1e308, 1e308, 0.0]), [0.5, 0.5, 0.0])


def test_explicit_zeros_are_dropped_from_count_matrices():
    m = sp.csr_matrix(np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]]))
    m.data[0] = 0.0
    out = V.as_count_matrix(m)
    assert out.nnz == 2 and (out.data > 0).all() and out.dtype == np.float64


def test_lams_and_their_axis():
    arr, scalar = V.as_lams(np.float32(0.5))
    assert scalar and arr.dtype == np.float64 and arr.tolist() == [0.5]
    assert V.as_lams(0.0, allow_zero=True)[0].tolist() == [0.0]
    a, b, scalar = V.as_lam_pair([0.1, 0.2], "lam_w", 0.3, "lam_e")
    assert not scalar and a.tolist() == [0.1, 0.2] and b.tolist() == [0.3, 0.3]
    with pytest.raises(ValueError, match="lam_w and lam_e"):
        V.as_lam_pair([0.1, 0.2], "lam_w", [0.1, 0.2, 0.3], "lam_e")
    fields = V.drop_lam_axis({"x": np.array([2.0]), "y": np.ones((1, 3))}, True)
    assert fields["x"] == 2.0 and isinstance(fields["x"], float) and fields["y"].shape == (3,)


def test_allocation_names_the_size_parameter():
    with pytest.raises(ValueError, match="K=1000000000000000"):
        with V.allocation("K", 10 ** 15):
            np.empty(10 ** 15)
    with pytest.raises(ValueError, match="unrelated"):  # other ValueErrors pass through untouched
        with V.allocation("K", 3):
            raise ValueError("unrelated")
