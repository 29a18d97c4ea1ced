"""Every public non-simulation function, with a valid baseline call and its parameters' edge values.

Sizes stay small so that every call answers in milliseconds; a target whose function is
missing from the tree under test (an older checkout) is left out.
"""

from __future__ import annotations

import importlib
import inspect

import numpy as np
from hypothesis import strategies as st

from ._harness import Target, bad_choices, bad_matrices, bad_scalars, bad_sizes, bad_vectors, lam_values

PI3 = np.array([0.5, 0.3, 0.2])
C3 = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 2.0], [1.0, 0.0, 0.0]])
LPT3 = np.array([0.4, 0.9, 1.6])
small_ints = st.integers(-3, 4)
seeds = st.one_of(st.sampled_from([-1, 2 ** 70, NotImplemented, "x", 1.5]), st.integers(0, 5))


def _get(module: str, name: str):
    """The function, or None where the tree under test lacks it. Where an older tree spells π
    ``freq``, ``pi=`` is passed on as ``freq=`` (so the same fuzz measures it)."""
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    params = inspect.signature(fn).parameters
    if "pi" in params or "freq" not in params:
        return fn

    def renamed(**kw):
        return fn(**{("freq" if k == "pi" else k): v for k, v in kw.items()})
    return renamed


def _bigram_method(method):
    def call(tau=0.5, pi=None, contexts=None, optimizer="sgd", **kw):
        from imbalance.theory import bigram_equilibrium

        eq = bigram_equilibrium(C3, [0.1, 1.0], optimizer=optimizer, batch_size=4)
        if method == "logit_adjusted":
            return eq.logit_adjusted(tau, pi) if pi is not None else eq.logit_adjusted(tau)
        if method == "predicted_marginal":
            return eq.predicted_marginal()
        return getattr(eq, method)(contexts)
    return call


def _plot(name):
    def call(**kw):
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        from imbalance import plot

        fig, ax = plt.subplots()
        try:
            return getattr(plot, name)(ax, **kw) and None
        finally:
            plt.close(fig)
    return call


def _warm_cli():
    import imbalance.cli  # noqa: F401 - the first import (torch, submitit) must not count against a call
    import imbalance.sim.scaleout  # noqa: F401


def _cli(argv):
    """``imbalance`` with a drawn command line; the report itself is replaced by a stub, so only
    argument parsing and set-up run."""
    import tempfile
    from unittest import mock

    import imbalance.cli as cli

    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(cli, "run", return_value=[]), \
            mock.patch.object(cli, "write_report", return_value=f"{tmp}/report.md"):
        args = [a.replace("{tmp}", tmp) for a in argv]
        if "--out" not in args and args[:1] == ["reproduce"]:
            args += ["--out", tmp]
        return cli.main(args)


cli_args = st.lists(st.sampled_from(["reproduce", "--fast", "--seeds", "0", "-3", "x", "1e9", "--lam-jobs", "--device",
                                     "tpu", "--executor", "cloud", "--slurm-param", "=", "a=b", "--text",
                                     "{tmp}/missing.txt", "--out", "{tmp}/o", "--slurm-time", "nan", "--slurm-mem-gb",
                                     "inf", "-1", "--fresh", "--bogus", ""]), min_size=0, max_size=6)


def targets() -> list[Target]:
    T = []

    def add(module, name, valid, edges, call=None, **kw):
        fn = call or _get(module, name)
        if fn is not None:
            T.append(Target(f"{module.split('.', 1)[-1]}.{name}", fn, valid, edges, **kw))

    lam = lam_values()
    opt = st.one_of(bad_choices, st.sampled_from(["sgd", "adamw"]))
    # ---- theory
    add("imbalance.theory", "unigram_equilibrium", dict(pi=PI3, lam=[0.1, 1.0]), dict(pi=bad_vectors, lam=lam))
    add("imbalance.theory", "margin_law", dict(pi=PI3, lam=0.1, optimizer="adamw", batch_size=8),
        dict(pi=bad_vectors, lam=lam, r=bad_scalars, optimizer=opt, batch_size=bad_sizes, eps=bad_scalars))
    add("imbalance.theory", "bigram_equilibrium", dict(counts=C3, lam=0.1, optimizer="adamw", batch_size=8),
        dict(counts=bad_matrices, lam=lam, r=bad_scalars, optimizer=opt, batch_size=bad_sizes, eps=bad_scalars),
        nan_fields=frozenset({"loss_per_token", "context_loss", "residual", "flow_time"}))
    for method, edges in (("logit_adjusted", dict(tau=bad_scalars, pi=bad_vectors)),
                          ("probs", dict(contexts=st.one_of(bad_vectors, small_ints, bad_scalars))),
                          ("logits", dict(contexts=st.one_of(bad_vectors, small_ints, bad_scalars)))):
        add("imbalance.theory", f"BigramEquilibrium.{method}", {}, edges, call=_bigram_method(method),
            nan_fields=frozenset({"loss_per_token"}))
    add("imbalance.theory", "ufm_equilibrium", dict(pi=PI3, lam_w=0.05, lam_h=0.05),
        dict(pi=bad_vectors, lam_w=lam, lam_h=lam, rtol=bad_scalars, bias=st.sampled_from([None, "yes", 2])),
        nan_fields=frozenset({"classifier_cosine", "residual", "flow_time"}))  # AdamW certificates: NaN under L2
    add("imbalance.theory", "factored_bigram_equilibrium", dict(counts=C3, lam_w=0.05, lam_e=0.05),
        dict(counts=bad_matrices, lam_w=lam, lam_e=lam, tied=st.sampled_from([None, "yes", 2])),
        nan_fields=frozenset({"loss_per_token", "context_loss", "residual", "flow_time"}))
    add("imbalance.theory", "two_group_pi", dict(k_major=2, k_minor=2, ratio=10.0),
        dict(k_major=bad_sizes, k_minor=bad_sizes, ratio=bad_scalars))
    add("imbalance.theory", "minority_cosine", dict(k_major=2, k_minor=2, ratio=10.0, lam_w=0.01, lam_h=0.01),
        dict(k_major=bad_sizes, k_minor=bad_sizes, ratio=st.one_of(bad_scalars, bad_vectors), lam_w=lam, lam_h=lam,
             rtol=bad_scalars),
        nan_fields=frozenset({"cosine"}))  # the cosine is NaN where the minority classifiers vanish
    add("imbalance.theory", "solve_nuclear_softmax", dict(target=C3 / C3.sum(), mu=0.05),
        dict(target=bad_matrices, mu=bad_scalars, rtol=bad_scalars, row_scale=bad_vectors))
    # ---- shared closed forms
    add("imbalance.formulas", "kappa", dict(context_prob=PI3, lam=0.1), dict(context_prob=bad_vectors, lam=lam,
                                                                            r=bad_scalars))
    add("imbalance.formulas", "adamw_rho", dict(pi=PI3, batch_size=8), dict(pi=bad_vectors, batch_size=bad_sizes))
    add("imbalance.formulas", "logit_adjustment", dict(pi=PI3, tau=1.0),
        dict(pi=bad_vectors, tau=bad_scalars, unseen=bad_choices))
    add("imbalance.formulas", "unigram_small_lambda", dict(pi=PI3), dict(pi=bad_vectors))
    add("imbalance.formulas", "unigram_large_lambda", dict(pi=PI3, lam=10.0), dict(pi=bad_vectors, lam=lam))
    # ---- frequencies and metrics
    add("imbalance.zipf", "zipf_pmf", dict(K=5, s=1.1), dict(K=bad_sizes, s=bad_scalars, q=bad_scalars))
    add("imbalance.zipf", "frequency_buckets", dict(pi=PI3), dict(pi=bad_vectors, scheme=bad_choices,
                                                                 n_groups=bad_sizes), aliases={"pi": ("freq",)})
    lpt = st.one_of(bad_vectors, bad_matrices)
    add("imbalance.metrics", "per_token_loss", dict(ce=[0.1, 0.2], targets=[0, 2], vocab_size=3),
        dict(ce=bad_vectors, targets=st.one_of(bad_vectors, st.just([0, 7])), vocab_size=bad_sizes),
        nan_fields=frozenset({""}))
    for name in ("aggregate_loss", "token_balanced_loss", "fraction_learned"):
        add("imbalance.metrics", name, dict(loss_per_token=LPT3, pi=PI3), dict(loss_per_token=lpt, pi=bad_vectors),
            aliases={"pi": ("freq",)})
    add("imbalance.metrics", "bucket_loss", dict(loss_per_token=LPT3, pi=PI3),
        dict(loss_per_token=lpt, pi=bad_vectors, scheme=bad_choices, n_groups=bad_sizes, weighting=bad_choices),
        aliases={"pi": ("freq",)})
    add("imbalance.metrics", "fairness_gap", dict(loss_per_token=LPT3, pi=PI3),
        dict(loss_per_token=lpt, pi=bad_vectors, scheme=bad_choices), aliases={"pi": ("freq",)})
    add("imbalance.metrics", "learning_speed", dict(steps=[0.0, 1.0, 2.0], curve=np.ones((3, 2))),
        dict(steps=bad_vectors, curve=st.one_of(bad_vectors, bad_matrices)))
    add("imbalance.metrics", "mean_ci", dict(x=[1.0, 2.0, 4.0]),
        dict(x=st.one_of(bad_vectors, bad_matrices), axis=st.one_of(small_ints, bad_scalars), level=bad_scalars))
    add("imbalance.metrics", "expected_calibration_error", dict(confidence=[0.2, 0.9], correct=[0, 1]),
        dict(confidence=bad_vectors, correct=bad_vectors, n_bins=bad_sizes))
    add("imbalance.metrics", "marginal_calibration_error", dict(pred_marginal=PI3, pi=PI3),
        dict(pred_marginal=st.one_of(bad_vectors, bad_matrices), pi=bad_vectors), aliases={"pi": ("freq",)})
    # ---- corpus
    add("imbalance.corpus", "tokenize_words", dict(text="a b a c", vocab_size=3),
        dict(text=st.one_of(st.text(max_size=20), bad_scalars), vocab_size=bad_sizes))
    add("imbalance.corpus", "bigram_counts", dict(ids=np.array([0, 1, 2, 1]), vocab_size=3),
        dict(ids=st.one_of(bad_vectors, st.just(np.array([0, 5]))), vocab_size=bad_sizes))
    add("imbalance.corpus", "zipf_transition_matrix", dict(V=4), dict(V=bad_sizes, s=bad_scalars,
                                                                      sharpness=bad_scalars, seed=seeds))
    add("imbalance.corpus", "zipf_markov_stream", dict(V=4, n_tokens=20),
        dict(V=bad_sizes, n_tokens=bad_sizes, s=bad_scalars, seed=seeds))
    add("imbalance.corpus", "zipf_successor_stream", dict(V=8, n_tokens=20, rng=np.random.default_rng(0)),
        dict(V=bad_sizes, n_tokens=bad_sizes, s=bad_scalars, follow=bad_scalars, block=bad_sizes,
             rng=st.sampled_from([None, 3, "rng"])))
    # ---- symbolic entry points (sizes)
    for module, name in (("imbalance.symbolic.unigram", "unigram_objective"),
                         ("imbalance.symbolic.unigram", "unigram_stationarity"),
                         ("imbalance.symbolic.unigram", "unigram_omega_solution"),
                         ("imbalance.symbolic.unigram", "unigram_small_lam_limit"),
                         ("imbalance.symbolic.unigram", "unigram_first_order_closed_form"),
                         ("imbalance.symbolic.bigram", "bigram_context_objective"),
                         ("imbalance.symbolic.bigram", "bigram_fixed_point"),
                         ("imbalance.symbolic.bigram", "deterministic_margin_equation"),
                         ("imbalance.symbolic.bigram", "deterministic_loss"),
                         ("imbalance.symbolic.mitigation", "balanced_bayes_predictor"),
                         ("imbalance.symbolic.adamw", "adamw_margin_equation")):
        add(module, name, dict(K=2), dict(K=bad_sizes))
    # ---- figures that compute theory
    add("imbalance.plot", "unigram_bias_shift", dict(pi=PI3, lams=[0.1, 10.0]),
        dict(pi=bad_vectors, lams=lam, tokens=st.sampled_from([(0, 7), ("a",), (), None])),
        call=_plot("unigram_bias_shift"), aliases={"lams": ("lam",)})
    add("imbalance.plot", "margin_collapse", dict(pi=PI3, lams=[0.1]),
        dict(pi=bad_vectors, lams=lam, optimizer=opt, batch_size=bad_sizes), call=_plot("margin_collapse"),
        aliases={"lams": ("lam",)})
    # ---- command line
    add("imbalance.cli", "main", dict(argv=["reproduce"]), dict(argv=cli_args), call=_cli,
        aliases={"argv": ("",)})
    return T


_warm_cli()
TARGETS = targets()
