"""T8 in sympy: the within-group gradient block is −√π_G I (UFM) / −π_G I (LM) whatever the
other classes, and the two-group threshold R* lambdified equals the library's closed form."""

import numpy as np
import pytest
import sympy as sp

from imbalance.symbolic import collapse as C
from imbalance.theory.collapse import minority_collapse_threshold


@pytest.mark.parametrize("m, n_other", [(2, 0), (2, 2), (3, 1), (4, 0)])
@pytest.mark.parametrize("weighted", [True, False])
def test_contrast_block_is_minus_frequency(m, n_other, weighted):
    out = C.contrast_block(m, n_other, weighted=weighted)
    assert out["gap"] == sp.zeros(m - 1, m - 1)


@pytest.mark.parametrize("model", ["ufm", "lm"])
def test_two_group_threshold_matches_library(model):
    out = C.two_group_threshold(model)
    ka, kb = sp.symbols("K_A K_B", positive=True)
    f = sp.lambdify((ka, kb, C.lam_W, C.lam_H), out["R_star"])
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.integers(1, 6), rng.integers(2, 6)
        lw, lh = 10 ** rng.uniform(-3, -1, 2)
        kw = dict(lam_w=lw, lam_h=lh) if model == "ufm" else dict(model="factored", lam_w=lw, lam_h=lh)
        expected = max(1.0, f(a, b, lw, lh))
        assert minority_collapse_threshold(int(a), int(b), **kw) == pytest.approx(expected, rel=1e-13)


def test_bad_group_size():
    with pytest.raises(ValueError, match="m"):
        C.contrast_block(1, 2)
    with pytest.raises(ValueError, match="n_other"):
        C.contrast_block(2, 5)
