"""The printed closed forms in imbalance.symbolic docstrings are regression tests.

The examples themselves run with the suite (``--doctest-modules`` in pyproject.toml, over
every module of ``imbalance``); this test makes sure each symbolic module keeps some, so a
derivation cannot silently lose its printed form.
"""

import doctest

import pytest

import imbalance.symbolic as symbolic

MODULES = [symbolic.unigram, symbolic.bigram, symbolic.adamw, symbolic.features, symbolic.ufm,
           symbolic.factored, symbolic.collapse, symbolic.loss_bounds, symbolic.mitigation, symbolic._common]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_symbolic_module_has_docstring_examples(module):
    examples = sum(len(t.examples) for t in doctest.DocTestFinder().find(module))
    assert examples > 0, f"{module.__name__} has no doctest"


def test_doctests_run_with_the_suite(pytestconfig):
    assert pytestconfig.getoption("doctestmodules"), "run the suite with --doctest-modules (pyproject.toml addopts)"
    assert "imbalance" in pytestconfig.getini("testpaths")
