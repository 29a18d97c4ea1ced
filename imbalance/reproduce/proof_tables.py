"""The tables in proofs/, generated (never typed): ``python -m imbalance.reproduce.proof_tables [NAME ...]``
rewrites each table between ``<!-- table:NAME -->`` and ``<!-- /table:NAME -->`` in its proof file;
``--check`` only compares (exit status 1 on a difference); ``--fast`` renders the small variants
that tests run. Each table is a function of ``fast`` returning Markdown.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

from .. import metrics
from ..corpus import bigram_counts, zipf_successor_stream
from ..theory import factored_bigram_equilibrium, ufm_equilibrium
from ..theory.collapse import minority_collapse_threshold
from ..theory.loss_bounds import ufm_loss_ceiling
from ..theory.ufm import two_group_pi
from ..zipf import zipf_pmf

__all__ = ["TABLES", "render", "replace_block", "main"]

PROOFS = Path(__file__).resolve().parents[2] / "proofs"


def _sci(x):
    """1e-4, 3e-3, 0.1 (the proofs' style)."""
    return f"{x:g}" if x >= 0.01 else f"{x:.0e}".replace("e-0", "e-")


def _md(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def t5_losses(fast=False):
    """T5 counterexample family π = (.5, .3, .15, .05), λ_W = λ_H = λ: ℓ of the most and least frequent."""
    pi = np.array([0.5, 0.3, 0.15, 0.05])
    lams = np.array([0.1, 0.2, 0.3, 0.5, 0.8])
    eq = ufm_equilibrium(pi, lams, lams, rtol=1e-11)
    L = eq.loss_per_token  # (L, K)
    return _md(["λ"] + [f"{x:g}" for x in lams],
               [["ℓ (π=.5)"] + [f"{v:.3f}" for v in L[:, 0]], ["ℓ (π=.05)"] + [f"{v:.3f}" for v in L[:, 3]]])


def t8_two_group(fast=False):
    """Closed-form R* and the certified solver's minority cosine on both sides (K_A = K_B = 5)."""
    rows = []
    for lam in (0.03, 0.1) if fast else (0.01, 0.03, 0.1):
        R = minority_collapse_threshold(5, 5, lam, lam)
        cos = []
        for f in (0.99, 1.01):
            eq = ufm_equilibrium(two_group_pi(5, 5, R * f), lam, lam, rtol=1e-11)
            cos.append(1 - eq.classifier_cosine[5, 6])
        rows.append([f"{lam:g}", f"{R:.6g}", f"{cos[0]:.2e}", f"{cos[1]:.1e}" if cos[1] > 1e-12 else "< 1e-12"])
    return _md(["λ_W = λ_H", "R* = (1/λ⁴ − 5)/5", "1 − cos at 0.99 R*", "1 − cos at 1.01 R*"], rows)


def t8_zipf_rank(fast=False):
    """rank(Z*) against #{π_k > λ_Wλ_H} on Zipf(1) frequencies, λ_Wλ_H just above π_j and at the
    geometric midpoint of π_j and π_{j+1}."""
    rows = []
    for K, js in ((30, (2, 8)),) if fast else ((30, (2, 8, 20)), (100, (2, 10, 40, 80))):
        pi = zipf_pmf(K, 1.0)
        mu2 = np.concatenate([[pi[j] * 1.0002, np.sqrt(pi[j] * pi[j + 1])] for j in js])
        lams = np.sqrt(mu2)
        eq = ufm_equilibrium(pi, lams, lams, rtol=1e-10)
        for m2, W in zip(mu2, eq.W):
            sv = np.linalg.svd(W, compute_uv=False)
            rank = int(np.sum(sv > 1e-6 * sv[0]))
            rows.append([str(K), f"{m2:.4e}", str(int(np.sum(pi > m2))), str(rank)])
    return _md(["K", "λ_Wλ_H", "#{π_k > λ_Wλ_H}", "rank(Z*)"], rows)


def t8_real_text(fast=False):
    """Untied factored bigram LM (λ_W = λ_E = λ) on word bigrams of the shipped King James Bible:
    rank(Z*) against the copy-family count #{π_v > λ}, and the frequency of the rank(Z*)-th most
    frequent token in units of λ (the threshold at which the count would be right)."""
    from ..corpus import tokenize_words
    from ..lm.corpus import shipped_corpus_text

    text = shipped_corpus_text()
    rows = []
    for V in (100,) if fast else (200, 500):
        C = bigram_counts(tokenize_words(text, V)[0], V)
        lams = np.array([1e-2, 3e-3]) if fast else np.array([1e-2, 3e-3, 1e-3, 3e-4])
        eq = factored_bigram_equilibrium(C, lams, lams, rtol=1e-8)
        pi_sorted = np.sort(eq.token_frequency)[::-1]
        for i, lam in enumerate(lams):
            r = int(eq.rank[i])
            rows.append([str(V), _sci(lam), str(int(np.sum(eq.token_frequency > lam))), str(r),
                         f"{pi_sorted[r - 1] / lam:.1f}" if r else "–"])
    return _md(["V", "λ", "#{π_v > λ}", "rank(Z*)", "π_(rank) / λ"], rows)


def t9_column_real_text(fast=False):
    """T9 row and column bounds for the untied factored LM (λ_W = λ_E = λ) on word bigrams of the shipped
    King James Bible: how many tokens get a finite loss ceiling, and the marginal-mass deficit bound
    μ√m_v against the deficit (π_v − p̂_v)₊ of the exact optimum, both relative to π_v."""
    from ..corpus import tokenize_words
    from ..lm.corpus import shipped_corpus_text
    from ..theory.loss_bounds import factored_column_bound, factored_loss_ceiling

    V = 100 if fast else 200
    C = bigram_counts(tokenize_words(shipped_corpus_text(), V)[0], V)
    lams = np.array([1e-4, 1e-3]) if fast else np.array([1e-4, 3e-4, 1e-3])
    eq = factored_bigram_equilibrium(C, lams, lams, rtol=1e-8)
    col, row = factored_column_bound(C, lams, lams), factored_loss_ceiling(C, lams, lams)
    Cd = C.toarray()
    Px, pi = Cd.sum(1) / Cd.sum(), eq.token_frequency
    rows = []
    for i, lam in enumerate(lams):
        Z = (eq.W[i] @ eq.E[i]).T  # (n, V) logits after each context
        P = np.exp(Z - Z.max(1, keepdims=True))
        P /= P.sum(1, keepdims=True)
        deficit = np.maximum(pi - Px @ P, 0) / pi  # (V,)
        bound = col.mass_deficit[i] / pi  # (V,)
        finite = [str(int(np.isfinite(c.ceiling[i]).sum())) for c in (row, col)]
        rows.append([_sci(lam), *finite,
                     str(int(np.sum(bound < 1))), f"{np.median(bound):.3f}", str(int(np.sum(deficit > 0))),
                     f"{np.max(deficit):.3f}", f"{np.max(deficit / bound):.3f}"])
    return _md(["λ", "finite row ceilings", "finite column ceilings", "tokens with μ√m_v < π_v",
                "median μ√m_v/π_v", "tokens under-predicted", "max deficit/π_v",
                "max deficit/(μ√m_v)"], rows)


def t9_tightness(fast=False):
    """Ratio optimal loss / ceiling per log3 bucket, UFM on Zipf(1), K = 30."""
    pi = zipf_pmf(30, 1.0)
    lams = np.array([3e-3, 3e-2]) if fast else np.array([1e-3, 3e-3, 1e-2, 3e-2])
    eq = ufm_equilibrium(pi, lams, lams, rtol=1e-11)
    ceil = ufm_loss_ceiling(pi, lams, lams).ceiling  # (L, K)
    ids = metrics.frequency_buckets(pi)
    buckets = np.unique(ids)
    rows = []
    for i, lam in enumerate(lams):
        ratio = eq.loss_per_token[i] / ceil[i]  # 0 where the ceiling is ∞
        cells = []
        for b in buckets:
            r = ratio[ids == b]
            cells.append("∞ (vacuous)" if np.isinf(ceil[i][ids == b]).all() else f"{r.mean():.4f}")
        rows.append([f"{lam:g}"] + cells)
    sizes = [str(int(np.sum(ids == b))) for b in buckets]
    return _md(["λ"] + [f"b{b} ({s} classes)" for b, s in zip(buckets, sizes)], rows)


def t7_paradox(fast=False):
    """Exact factored bigram LM (λ_W = λ_E = λ) on a Zipfian successor stream, per log3 bucket."""
    V, n = (100, 100_000) if fast else (500, 1_000_000)
    C = bigram_counts(zipf_successor_stream(V, n, seed=0), V)
    lams = np.array([1e-3, 3e-3]) if fast else np.array([1e-4, 3e-4, 1e-3, 3e-3, 1e-2])
    eq = factored_bigram_equilibrium(C, lams, lams, rtol=1e-7)
    ids, bl = metrics.bucket_loss(eq.loss_per_token, eq.token_frequency)  # (L, n_b)
    rows = [[_sci(lam)] + [f"{v:.3f}" for v in bl[i]]
            + [f"{eq.aggregate_loss[i]:.4f}", f"{eq.token_balanced_loss[i]:.4f}", str(int(eq.rank[i])),
               str(int(np.sum(eq.token_frequency > lam)))]
            for i, lam in enumerate(lams)]
    sizes = np.bincount(metrics.frequency_buckets(eq.token_frequency)[eq.token_frequency > 0])
    head = [f"b{b} ({sizes[b]})" for b in ids]
    return _md(["λ"] + head + ["aggregate", "token-balanced", "rank", "#{π_v > λ}"], rows)


def t3_concentration(fast=False):
    """AdamW deterministic bigram: margin error of the simulation vs the T3 law against the number of
    occurrences of a context inside the β₂ window, x = Bπ/(1 − β₂). K = 32, Zipf(1.2), λ = 1, ε = 1e-8,
    lr 3e-3, iterate average over the second half, seeds' mean ± standard error."""
    from ..sim import BigramTable, BigramTask, sweep
    from ..sim.validate import compare_margins

    task = BigramTask.deterministic_zipf(32, 1.2)
    pi = task.context_probs
    steps, seeds = (300, 2) if fast else (8000, 4)
    rows = []
    for B, b2 in ((64, 0.99), (8, 0.9), (2, 0.5)):
        b1 = min(0.9, 0.99 * np.sqrt(b2))  # β₁² ≤ β₂
        res = sweep(task, [1.0], model=BigramTable(), optimizer="adamw", steps=steps, batch_size=B, lr=3e-3,
                    betas=(b1, b2), seeds=tuple(range(seeds)), average_last=steps // 2, eval_every=steps)
        c = compare_margins(res, task, eps=1e-8)
        err = c.sim[0] / c.theory[0] - 1  # (S, K) relative margin error per seed
        x = B * pi / (1 - b2)
        for lo, hi in ((100, np.inf), (10, 100), (1, 10), (0.1, 1), (0, 0.1)):
            sel = (x >= lo) & (x < hi)
            if not sel.any():
                continue
            e = err[:, sel].mean(axis=1)  # (S,) bin mean per seed
            se = e.std(ddof=1) / np.sqrt(e.size) if e.size > 1 else np.nan
            rows.append([f"{B}", f"{b2:g}", f"[{lo:g}, {hi:g})", str(int(sel.sum())), f"{e.mean():+.3f} ± {se:.3f}"])
    return _md(["B", "β₂", "Bπ/(1 − β₂)", "classes", "margin error (sim/law − 1)"], rows)


def t6_logit_adjustment(fast=False):
    """Token-balanced loss of the post-hoc logit-adjusted predictor (T6c) at τ ∈ {0, ¼, ½, ¾, 1} on the
    Zipfian Markov stream of the report (V = 500, 10⁶ tokens, s = 1.1), exact equilibria."""
    from ..corpus import zipf_markov_stream
    from ..theory import bigram_equilibrium

    V, n = (100, 100_000) if fast else (500, 1_000_000)
    C = bigram_counts(zipf_markov_stream(V, n, s=1.1, sharpness=3.0, seed=0), V)
    taus = (0.0, 0.25, 0.5, 0.75, 1.0)
    runs = [("L2", lam, dict(optimizer="sgd")) for lam in ((1e-3,) if fast else (1e-4, 1e-3, 1e-2))]
    runs.append(("AdamW (B = 256)", 1e-3, dict(optimizer="adamw", batch_size=256)))
    rows = []
    for name, lam, kw in runs:
        eq = bigram_equilibrium(C, lam, **kw)
        adj = [eq.logit_adjusted(t) for t in taus]
        bal = [a.token_balanced_loss for a in adj]
        best = int(np.argmin(bal))
        cells = [f"**{b:.3f}**" if i == best else f"{b:.3f}" for i, b in enumerate(bal)]
        rows.append([name, _sci(lam)] + cells + [f"{adj[0].aggregate_loss:.3f} → {adj[-1].aggregate_loss:.3f}"])
    return _md(["model", "λ", "τ = 0", "0.25", "0.5", "0.75", "1", "aggregate at τ = 0 → 1"], rows)


def t6b_factored(fast=False, V=16, width=4, seeds=(0, 1, 2, 3)):
    """T6b's factored extension: every FairAdamW variant's predicted bucket loss (T10 stationarity with row
    options, from each seed's init) against FairAdamW training (Zipf(1.1) stream, predictability 0.7)."""
    from ..optim.factored import factored_rows, markdown_table
    from ..sim import BigramTask

    kw = (dict(V=6, width=3, lams=(0.8,), batch_size=32, seeds=(0, 1), steps=300) if fast else
          dict(V=V, width=width, lams=(0.4, 0.8), batch_size=64, seeds=seeds, steps=8000))
    name = "t6b_factored" if V == 16 or fast else f"t6b_factored_v{V}"
    V = kw.pop("V")
    task = BigramTask.stochastic_zipf(V, 1.1, 0.7)
    rows = factored_rows(task, lr=1e-2, **kw)
    pi = task.token_probs
    settings = (f"Factored bigram z_x = W e_x (width {kw['width']}, init N(0, 0.1²)) on the Zipf(1.1) stream with "
                f"predictability 0.7, V = {V} (Bπ from {kw['batch_size'] * pi.max():.1f} down to "
                f"{kw['batch_size'] * pi.min():.2f}), B = {kw['batch_size']}, lr = 0.01, β = (0.9, 0.999), ε = 1e-8, "
                f"{kw['steps']} steps, iterate average over the last quarter, seeds {kw['seeds']}; FairAdamW options "
                f"on the rows of W and E (ρ-scale of the target frequencies). Predicted: seed mean of the equilibria "
                f"(worst certificate max|F| = {max(r['residual'] for r in rows):.0e}); measured: seed mean of the "
                f"trained bucket losses (nats, log3 buckets, 0 = most frequent). Generated by "
                f"`python -m imbalance.reproduce.proof_tables {name}`.")
    return markdown_table(rows, settings)


def t6b_factored_v32(fast=False):
    """:func:`t6b_factored` on V = 32 (width 8, three seeds)."""
    return t6b_factored(fast, V=32, width=8, seeds=(0, 1, 2))


def t6b_factored_verdicts(fast=False):
    """Theory only: each FairAdamW variant's verdict in the factored bigram (bucket damage against plain AdamW,
    seed 0's init) next to the one-hot T6b verdict (``fairness_verdict``) of the same frequencies, B and λ."""
    import torch

    from ..optim.factored import VARIANTS, variant_options
    from ..sim import BigramTask, FactoredBigram
    from ..theory.fair_decay import fairness_verdict
    from ..theory.fair_factored import bucket_damage, factored_fair_adamw_equilibrium, factored_fairness_verdict

    V, width = (6, 3) if fast else (16, 4)
    grid = [(32, 0.8)] if fast else [(16, 0.4), (16, 1.6), (64, 0.4), (64, 1.6), (256, 0.4), (256, 1.6)]
    task = BigramTask.stochastic_zipf(V, 1.1, 0.7)
    pi = task.token_probs
    p = FactoredBigram(width=width, init_scale=0.1).init(task, [torch.Generator().manual_seed(0)], torch.float64)
    init = (p["W"][0].numpy(), p["E"][0].numpy())
    rows = []
    for B, lam in grid:
        cells, damage = [], []
        for name in VARIANTS:
            o = variant_options(name, pi, B)
            th = dict(decay_scale=o.get("row_decay_scale"), lazy=o.get("lazy", "none"), coupled=o.get("coupled", False))
            eq = factored_fair_adamw_equilibrium(task.counts, lam, init=init, batch_size=B, r=task.r, **th)
            damage.append(bucket_damage(eq.loss_per_token, task.counts)[1])
            try:
                one_hot = fairness_verdict(pi, lam, batch_size=B, decay_scale=th["decay_scale"], lazy=th["lazy"],
                                           coupled=th["coupled"])
            except RuntimeError:  # the one-hot shared-moment solver's outer root (as in the one-hot grid)
                one_hot = "no solution found"
            cells.append((eq.residual, one_hot))
        row = [str(B), f"{lam:g}"]
        for (res, one_hot), d in zip(cells, damage):
            v = factored_fairness_verdict(d, damage[0]) if res < 1e-8 else f"(max abs F {res:.0e})"
            row.append(f"{v} ({one_hot}); {d[-1]:.2f} / {d[0]:.2f}")
        rows.append(row)
    return (f"Zipf(1.1) stream, predictability 0.7, V = {V}, width {width}, seed 0's init; cell: factored verdict "
            f"(one-hot T6b verdict of the same π, B, λ); predicted damage (bucket loss − Bayes loss, nats) of the "
            f"rarest / the most frequent bucket. Generated by "
            f"`python -m imbalance.reproduce.proof_tables t6b_factored_verdicts`.\n\n"
            + _md(["B", "λ", *VARIANTS], rows))


TABLES = {
    "t3_concentration": ("T3_adamw.md", t3_concentration),
    "t5_losses": ("T5_unconstrained_features.md", t5_losses),
    "t6b_factored": ("T6b_fair_optimizers.md", t6b_factored),
    "t6b_factored_v32": ("T6b_fair_optimizers.md", t6b_factored_v32),
    "t6b_factored_verdicts": ("T6b_fair_optimizers.md", t6b_factored_verdicts),
    "t6_logit_adjustment": ("T6_mitigations.md", t6_logit_adjustment),
    "t7_paradox": ("T7_factored_bigram.md", t7_paradox),
    "t8_two_group": ("T8_collapse_law.md", t8_two_group),
    "t8_real_text": ("T8_collapse_law.md", t8_real_text),
    "t8_zipf_rank": ("T8_collapse_law.md", t8_zipf_rank),
    "t9_column_real_text": ("T9_loss_ceilings.md", t9_column_real_text),
    "t9_tightness": ("T9_loss_ceilings.md", t9_tightness),
}


def _t10(name):
    """The T10 generator ``name`` of :mod:`imbalance.reproduce.adamw_shared_tables` (imported when run: it trains)."""
    def make(fast=False):
        from . import adamw_shared_tables

        return getattr(adamw_shared_tables, name)(fast)

    return make


TABLES.update({name: ("T10_adamw_shared.md", _t10(name))
               for name in ("t10_real_text", "t10_ufm", "t10_ufm_diagnosis", "t10_ufm_selection", "t10_tied",
                            "t10_batch_size", "t10_eps")})


def render(name: str, fast: bool = False) -> str:
    if name not in TABLES:
        raise ValueError(f"name must be one of {sorted(TABLES)}, got name={name!r}")
    return TABLES[name][1](fast)


def replace_block(text: str, name: str, table: str) -> str:
    """The proof text with the block of ``name`` replaced by ``table``; ValueError if absent."""
    pat = re.compile(rf"(<!-- table:{name} -->\n)(.*?)(<!-- /table:{name} -->)", re.S)
    if not pat.search(text):
        raise ValueError(f"no block <!-- table:{name} --> in the proof")
    return pat.sub(lambda m: m.group(1) + table + "\n" + m.group(3), text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", default=sorted(TABLES))
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--fast", action="store_true")
    args = ap.parse_args(argv)
    status = 0
    for name in args.names:
        path = PROOFS / TABLES[name][0] if name in TABLES else None
        table = render(name, args.fast)
        text = path.read_text(encoding="utf-8")
        new = replace_block(text, name, table)
        if args.check:
            if new != text:
                print(f"{name}: {path.name} differs from the generator", file=sys.stderr)
                status = 1
        else:
            path.write_text(new, encoding="utf-8")
            print(f"{name}: written to {path.name}")
    return status


if __name__ == "__main__":
    sys.exit(main())
