"""Every public non-simulation function and the command line, called with drawn bad and edge
inputs (NaN, ±inf, negative, zero, empty, wrong shape or dtype, strings, huge sizes, sparse
matrices with explicit zeros, float32 and non-contiguous arrays).

Contract (see ``_harness.classify``): a call returns finite values (NaN only where the
function documents it) or raises ``ValueError`` naming the parameter it refused; never
another exception, a silent NaN, or a hang. The command line answers a bad argument with
argparse's usage error (exit status 2).

Calls scale with the hypothesis profile: ``max_examples`` per target (60 in ``ci``, 1,000 in
``thorough``, over about 45 targets). ``IMBALANCE_FUZZ_REPORT=path`` writes the counts by
target and outcome as JSON at the end of the session.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ._harness import COLLECT, EXAMPLES, RECORD, classify, describe, is_failure, summary
from ._targets import TARGETS


@pytest.fixture(autouse=True)
def _report():  # rewritten after every test, so an interrupted session leaves its counts so far
    yield
    path = os.environ.get("IMBALANCE_FUZZ_REPORT")
    if path:
        with open(path, "w") as fh:
            json.dump(summary(), fh, indent=1, sort_keys=True)


# Functions maintained outside this suite's fixes, with failures the fuzzing found and that are
# reported to their maintainers: they run and are counted, and a failure shows as xfail.
# Empty: every target is asserted.
OWNED_ELSEWHERE: dict[str, str] = {}


def _cases():
    for t in TARGETS:
        marks = [pytest.mark.xfail(reason=OWNED_ELSEWHERE[t.name], strict=False)] \
            if t.name in OWNED_ELSEWHERE and not COLLECT else []
        yield pytest.param(t, id=t.name, marks=marks)


@pytest.mark.parametrize("target", list(_cases()))
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_bad_input_is_refused_by_name_or_answered_finitely(target, data):
    names = sorted(target.edges)
    replaced = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=min(2, len(names)), unique=True),
                         label="replaced")
    kwargs = dict(target.valid)
    for name in replaced:
        kwargs[name] = data.draw(target.edges[name], label=name)
    kind, detail = classify(target, kwargs, replaced)
    RECORD[target.name][kind] += 1
    if is_failure(kind):
        EXAMPLES[target.name].setdefault(kind, f"{describe(kwargs)} -> {detail}")
    if is_failure(kind) and not COLLECT:
        pytest.fail(f"{target.name}({describe(kwargs)}): {kind} {detail}")


def test_every_baseline_call_is_valid():
    """The baselines themselves return finite, documented values: a fuzz failure is then due
    to the drawn value, not to a broken baseline."""
    bad = {t.name: classify(t, dict(t.valid), []) for t in TARGETS}
    assert {k: v for k, v in bad.items() if v[0] != "ok"} == {}
