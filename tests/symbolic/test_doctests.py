"""The printed closed forms in imbalance.symbolic docstrings are regression tests."""

import doctest

import pytest

import imbalance.symbolic as symbolic
import imbalance.testing.strategies as strategies

MODULES = [symbolic.unigram, symbolic.bigram, symbolic.adamw, symbolic.features, symbolic.ufm,
           symbolic.factored, symbolic.collapse, symbolic.loss_bounds, symbolic.mitigation, symbolic._common, strategies]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, extraglobs={"sp": symbolic.unigram.sp}, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} doctest failure(s) in {module.__name__}"
    if module is not strategies:
        assert result.attempted > 0, f"{module.__name__} has no doctest"
