"""Speed of ``imbalance.lm`` against plain PyTorch on the same model and data.

Run: ``pytest -m benchmark tests/benchmarks/bench_lm.py -s``; CPU, torch's default threads.
(1) Training: ``train_run`` (a GPT-2 from ``transformers``, AdamW with decay groups, the
memory-mapped batch sampler, gradient clipping, per-step learning rate) against a plain loop
written out here (same model class and seed, ``torch.optim.AdamW`` on all parameters, clipping,
batches from a tensor in memory), tokens/s, interleaved repeats, median. Target: ≥ the plain
loop; asserted ≥ 0.9 of it because the two do the same arithmetic and the repeats of either on
a shared machine scatter by about ten percent.
(2) Audit: ``audit`` end to end (reading and tokenising the text, cross-entropy, per-id
accumulation, the mean logit) against the model's plain forward pass over the same windows
already tokenised, tokens/s. Target ≥ 0.9.
"""

import statistics
import time

import pytest
import torch

from imbalance.lm.audit import audit
from imbalance.lm.corpus import shipped_corpus_text
from imbalance.lm.model import GPTConfig, build_gpt
from imbalance.lm.tokenizer import train_bpe
from imbalance.lm.tokens import TokenSplit, encode_corpus
from imbalance.lm.train import TrainConfig, train_run

pytestmark = pytest.mark.benchmark
REPEATS = 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench-lm")
    text = root / "corpus.txt"
    text.write_text(shipped_corpus_text()[:1_000_000], encoding="utf-8")
    tok = train_bpe(text, 2048)
    tf = encode_corpus(text, tok, root / "tokens")
    return root, text, tok, tf


def _plain_loop(split, cfg, steps, seed=0):
    model = build_gpt(cfg.gpt(split.vocab_size), seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=0.1)
    data = split.windows("train")  # (n, T+1), in memory
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        w = data[torch.randint(data.shape[0], (cfg.batch_size,), generator=gen)]  # (B, T+1)
        logits = model(input_ids=w[:, :-1]).logits  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), w[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
    return steps * cfg.tokens_per_step / (time.perf_counter() - t0)


def test_training_throughput(setup):
    _, _, _, tf = setup
    steps = 30
    cfg = TrainConfig(layers=2, width=128, heads=4, context=128, steps=steps, batch_size=8, eval_every=steps,
                      eval_tokens=129, final_eval_tokens=129, warmup=5)
    split = TokenSplit(tf, cfg.context, 0.1)
    ours, plain = [], []
    for r in range(REPEATS):
        t0 = time.perf_counter()
        train_run(split, 0.1, r, cfg, device="cpu", progress=False)
        ours.append(steps * cfg.tokens_per_step / (time.perf_counter() - t0))
        plain.append(_plain_loop(split, cfg, steps, seed=r))
    ratio = statistics.median(ours) / statistics.median(plain)
    print(f"\ntraining tokens/s: imbalance.lm {statistics.median(ours):,.0f}, plain loop "
          f"{statistics.median(plain):,.0f}, ratio {ratio:.3f} (repeats {[round(x) for x in ours]} vs "
          f"{[round(x) for x in plain]})")
    assert ratio >= 0.9


@pytest.mark.parametrize("layers, width, n_tokens", [(2, 128, 60_000), (4, 256, 15_000)])
def test_audit_throughput(setup, layers, width, n_tokens):
    """Two shapes at V = 2,048: the smaller one spends the larger share of its forward pass in
    the output layer, where the audit's own work (a cross-entropy over V per position) adds most."""
    from transformers import PreTrainedTokenizerFast

    root, text, tok, tf = setup
    T, B = 128, 8
    cfg = GPTConfig(2048, layers=layers, width=width, heads=4, context=T)
    model_dir = root / f"model-{layers}x{width}"
    build_gpt(cfg, seed=0).save_pretrained(model_dir)
    PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(model_dir)
    lm = build_gpt(cfg, seed=0).eval()
    windows = TokenSplit(tf, T, 0.1).windows("train", n_tokens)  # (n, T+1)
    ours, plain = [], []
    for _ in range(REPEATS):
        res = audit(model_dir, text, context=T, batch_size=B, max_tokens=n_tokens, device="cpu", progress=False)
        ours.append(res.tokens_per_s)
        t0 = time.perf_counter()
        with torch.no_grad():
            for i in range(0, windows.shape[0], B):
                lm(input_ids=windows[i:i + B, :-1])
        plain.append(windows.shape[0] * T / (time.perf_counter() - t0))
    ratio = statistics.median(ours) / statistics.median(plain)
    print(f"\naudit ({layers} layers, width {width}) tokens/s {statistics.median(ours):,.0f}, plain forward "
          f"{statistics.median(plain):,.0f}, ratio {ratio:.3f} (repeats {[round(x) for x in ours]} vs "
          f"{[round(x) for x in plain]})")
    assert ratio >= 0.9
