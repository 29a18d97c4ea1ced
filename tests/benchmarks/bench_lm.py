"""Speed of ``imbalance.lm`` against plain PyTorch and a plain Hugging Face ``Trainer`` on the
same model and data.

Run: ``pytest -m benchmark tests/benchmarks/bench_lm.py -s``; CPU, torch's default threads
(``OMP_NUM_THREADS=1`` pins one). Every comparison interleaves its repeats in one process and
reports the median and the spread (min–max) of each side.
(1) Training: ``train_run`` (a GPT-2 from ``transformers``, AdamW with decay groups, the
memory-mapped batch sampler, gradient clipping, per-step learning rate) against (a) a plain loop
written out here (same model class and seed, ``torch.optim.AdamW`` on all parameters, clipping,
batches from a tensor in memory) and (b) a plain ``transformers.Trainer`` (same GPT-2 config
and seed, same batch of windows, same steps; its default optimiser, AdamW with the Trainer's
decay groups; gradient clipping; logging, evaluation and saving off; ``labels = input_ids``, the
Trainer's usual causal-LM shift). Tokens/s of the whole call (model built, first and last
evaluation of ``train_run`` included). Target: ≥ either; asserted ≥ 0.9 of each because the
sides do the same arithmetic and the repeats of either on a shared machine scatter by about ten
percent.
(2) Audit: ``audit`` called as ``imbalance lm audit`` calls it (reading the text, tokenising it
while streaming or reading its token cache, cross-entropy, per-id accumulation, the mean logit)
against the same saved model's plain forward pass (``from_pretrained``, ``no_grad``) over the
same windows at the same batch size, already tokenised, tokens/s. Target ≥ 0.9.
"""

import statistics
import time

import numpy as np
import pytest
import torch

from imbalance.lm.audit import audit
from imbalance.lm.corpus import shipped_corpus_text
from imbalance.lm.model import GPTConfig, build_gpt
from imbalance.lm.tokenizer import train_bpe
from imbalance.lm.tokens import TokenSplit, encode_corpus
from imbalance.lm.train import TrainConfig, train_run

pytestmark = pytest.mark.benchmark
REPEATS = 5


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench-lm")
    text = root / "corpus.txt"
    text.write_text(shipped_corpus_text()[:1_000_000], encoding="utf-8")
    tok = train_bpe(text, 2048)
    tf = encode_corpus(text, tok, root / "tokens")
    return root, text, tok, tf


def _spread(name, xs):
    return f"{name} {statistics.median(xs):,.0f} ({min(xs):,.0f}–{max(xs):,.0f})"


def _plain_loop(split, cfg, steps, seed=0):
    t0 = time.perf_counter()
    model = build_gpt(cfg.gpt(split.vocab_size), seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=0.1)
    data = split.windows("train")  # (n, T+1), in memory
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        w = data[torch.randint(data.shape[0], (cfg.batch_size,), generator=gen)]  # (B, T+1)
        logits = model(input_ids=w[:, :-1]).logits  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), w[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
    return steps * cfg.tokens_per_step / (time.perf_counter() - t0)


class _Windows(torch.utils.data.Dataset):
    def __init__(self, w):
        self.w = w  # (n, T)

    def __len__(self):
        return self.w.shape[0]

    def __getitem__(self, i):
        return {"input_ids": self.w[i], "labels": self.w[i]}


def _hf_trainer(split, cfg, steps, out, seed=0):
    from transformers import Trainer, TrainingArguments

    t0 = time.perf_counter()
    model = build_gpt(cfg.gpt(split.vocab_size), seed)
    data = _Windows(split.windows("train")[:, :-1].contiguous())  # (n, T) inputs, the Trainer shifts labels
    args = TrainingArguments(output_dir=str(out), max_steps=steps, per_device_train_batch_size=cfg.batch_size,
                             learning_rate=cfg.lr, adam_beta1=cfg.betas[0], adam_beta2=cfg.betas[1],
                             weight_decay=0.1, max_grad_norm=cfg.grad_clip, warmup_steps=cfg.warmup,
                             lr_scheduler_type="cosine", logging_strategy="no", eval_strategy="no",
                             save_strategy="no", report_to=[], disable_tqdm=True, use_cpu=True, seed=seed,
                             dataloader_num_workers=0)
    Trainer(model=model, args=args, train_dataset=data).train()
    return steps * cfg.tokens_per_step / (time.perf_counter() - t0)


def test_training_throughput(setup):
    root, _, _, tf = setup
    steps = 30
    cfg = TrainConfig(layers=2, width=128, heads=4, context=128, steps=steps, batch_size=8, eval_every=steps,
                      eval_tokens=129, final_eval_tokens=129, warmup=5)
    split = TokenSplit(tf, cfg.context, 0.1)
    ours, plain, hf = [], [], []
    for r in range(REPEATS):
        t0 = time.perf_counter()
        train_run(split, 0.1, r, cfg, device="cpu", progress=False)
        ours.append(steps * cfg.tokens_per_step / (time.perf_counter() - t0))
        plain.append(_plain_loop(split, cfg, steps, seed=r))
        hf.append(_hf_trainer(split, cfg, steps, root / "trainer", seed=r))
    vs_plain = statistics.median(ours) / statistics.median(plain)
    vs_hf = statistics.median(ours) / statistics.median(hf)
    print(f"\ntraining tokens/s, median (min–max) of {REPEATS}: {_spread('imbalance.lm', ours)}; "
          f"{_spread('plain loop', plain)}; {_spread('Trainer', hf)}; ratio to the plain loop {vs_plain:.3f}, "
          f"to the Trainer {vs_hf:.3f}")
    assert vs_plain >= 0.9 and vs_hf >= 0.9


@pytest.mark.parametrize("layers, width, n_tokens", [(2, 128, 120_000), (4, 256, 40_000)])
def test_audit_throughput(setup, layers, width, n_tokens):
    """Two shapes at V = 2,048: the smaller one spends the larger share of its forward pass in
    the output layer, where the audit's own work (a cross-entropy over V per position) adds most.
    The audited text is the corpus's first lines holding ``n_tokens`` tokens, audited whole, three
    ways per repeat: tokenised while streaming (``cache_dir=None``), through a fresh token cache
    (the first audit of a text: encoding included in its tokens/s) and through the cache it wrote
    (every later audit of that text); and, for reference, the cached audit with one batch at a time
    (``workers=1``: the default on CPU scores several at once, one intra-op thread each). Measured
    on 2 cores, default threads, three runs: cached 1.02–1.17 and 1.05–1.25 of the plain forward
    (2 × 128, 4 × 256), streamed 0.96–1.03 and 0.96–1.15; one batch at a time 0.75–0.95 and
    0.95–1.15 (and 0.77–0.93, 0.89–1.05 over nine runs before the workers existed).
    Asserted: the cached audit ≥ 0.9 of the plain forward."""
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    root, text, tok, tf = setup
    T, B = 128, 8
    lines = text.read_text(encoding="utf-8").splitlines(keepends=True)
    cum = np.cumsum([len(e.ids) for e in tok.encode_batch(lines, add_special_tokens=False)])
    part = root / f"part-{n_tokens}.txt"
    part.write_text("".join(lines[: int(np.searchsorted(cum, n_tokens)) + 1]), encoding="utf-8")
    cfg = GPTConfig(2048, layers=layers, width=width, heads=4, context=T)
    model_dir = root / f"model-{layers}x{width}"
    build_gpt(cfg, seed=0).save_pretrained(model_dir)
    PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(model_dir)
    lm = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    windows = TokenSplit(tf, T, 0.1).windows("train", n_tokens)  # (n, T+1): the text's first windows
    side = {"streamed": [], "cold cache": [], "cached": [], "cached, one worker": [], "plain forward": []}
    for rep in range(REPEATS):
        res = audit(model_dir, part, context=T, batch_size=B, device="cpu", cache_dir=None, progress=False)
        side["streamed"].append(res.tokens_per_s)
        cache = root / f"cache-{layers}x{width}-{rep}"
        res = audit(model_dir, part, context=T, batch_size=B, device="cpu", cache_dir=cache, progress=False)
        side["cold cache"].append(res.n_tokens / (res.encode_s + res.n_tokens / res.tokens_per_s))
        res = audit(model_dir, part, context=T, batch_size=B, device="cpu", cache_dir=cache, progress=False)
        assert res.token_source == "cache" and res.encode_s == 0
        side["cached"].append(res.tokens_per_s)
        res = audit(model_dir, part, context=T, batch_size=B, device="cpu", cache_dir=cache, progress=False,
                    workers=1)
        side["cached, one worker"].append(res.tokens_per_s)
        t0 = time.perf_counter()
        with torch.no_grad():
            for i in range(0, windows.shape[0], B):
                lm(input_ids=windows[i:i + B, :-1])
        side["plain forward"].append(windows.shape[0] * T / (time.perf_counter() - t0))
    plain = statistics.median(side["plain forward"])
    print(f"\naudit ({layers} layers, width {width}, {res.n_tokens:,} tokens) tokens/s, median (min–max) of "
          f"{REPEATS}: " + "; ".join(_spread(k, v) for k, v in side.items()) + "; ratios to the plain forward: "
          + ", ".join(f"{k} {statistics.median(v) / plain:.3f}" for k, v in side.items() if k != "plain forward"))
    assert statistics.median(side["cached"]) / plain >= 0.9


def _sequential_steps(models, lams, cfg):
    """One training step per model, one model after another (what ``lm_sweep`` runs)."""
    from imbalance.lm.model import param_groups

    opts = [torch.optim.AdamW(param_groups(m, lam), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
            for m, lam in zip(models, lams)]

    def step(x, y):  # (S, B, T) each
        losses = []
        for m, o, xs, ys in zip(models, opts, x, y):
            logits = m(input_ids=xs).logits  # (B, T, V)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ys.reshape(-1))
            o.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), cfg.grad_clip)
            o.step()
            losses.append(loss.detach())
        return torch.stack(losses)  # (S,)

    return step


def _stacked_steps(models, lams, cfg):
    """The same S models as one: parameters stacked (S, ...) by ``torch.func.stack_module_state``,
    the forward pass ``vmap`` of ``functional_call`` (eager attention: the fused CPU attention
    kernel has no batching rule), per-model gradient clipping, per-model decoupled decay
    p ← (1 − lr λ_s) p on the decayed tensors, then one AdamW step without decay on the stacks —
    AdamW's own order of operations, so each slice follows its sequential run."""
    import copy

    from torch.func import functional_call, stack_module_state, vmap

    from imbalance.lm.model import decay_table

    S = len(models)
    base = copy.deepcopy(models[0])
    base.config._attn_implementation = "eager"
    params, buffers = stack_module_state(models)
    params = {k: v.detach().requires_grad_() for k, v in params.items()}
    decayed = {r["name"] for r in decay_table(models[0]) if r["decayed"]}
    lam = torch.tensor(lams, dtype=torch.float32)  # (S,)
    opt = torch.optim.AdamW(list(params.values()), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=0.0)

    def loss_of(p, b, x, y):
        logits = functional_call(base, (p, b), (), {"input_ids": x}).logits  # (B, T, V)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    batched = vmap(loss_of)

    def step(x, y):  # (S, B, T) each
        losses = batched(params, buffers, x, y)  # (S,)
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        grads = [p.grad for p in params.values()]
        norms = torch.stack([g.reshape(S, -1).pow(2).sum(1) for g in grads]).sum(0).sqrt()  # (S,)
        coef = (cfg.grad_clip / (norms + 1e-6)).clamp(max=1.0)  # (S,) as clip_grad_norm_
        with torch.no_grad():
            for name, p in params.items():
                shape = (S,) + (1,) * (p.ndim - 1)
                p.grad.mul_(coef.view(shape))
                if name in decayed:
                    p.mul_((1 - cfg.lr * lam).view(shape))
        opt.step()
        return losses.detach()

    return step


@pytest.mark.parametrize("width", [32, 64, 96])
def test_stacked_training_against_sequential(setup, width):
    """S = 4 models (λ = 0, 0.1, 0.3, 1 at one seed, 2 layers, context 64, V = 2,048, 32 windows
    a step) trained as one vmapped model against one after another: seconds per step of all S,
    interleaved, median and spread. Both do the same arithmetic: their per-model losses agree at
    every step (float32 rounding, amplified a little by Adam's normalisation: rtol 1e-4)."""
    _, _, _, tf = setup
    cfg = TrainConfig(layers=2, width=width, heads=4, context=64, batch_size=32, lr=1e-3)
    split = TokenSplit(tf, cfg.context, 0.1)
    lams = [0.0, 0.1, 0.3, 1.0]
    seq = _sequential_steps([build_gpt(cfg.gpt(split.vocab_size), 0) for _ in lams], lams, cfg)
    stk = _stacked_steps([build_gpt(cfg.gpt(split.vocab_size), 0) for _ in lams], lams, cfg)
    gen = torch.Generator().manual_seed(0)
    t_seq, t_stk = [], []
    for i in range(8):
        x, y = split.sample(gen, len(lams) * cfg.batch_size)  # (S B, T) each
        x, y = x.view(len(lams), cfg.batch_size, -1), y.view(len(lams), cfg.batch_size, -1)
        t0 = time.perf_counter()
        a = seq(x, y)
        t1 = time.perf_counter()
        b = stk(x, y)
        t2 = time.perf_counter()
        if i:  # the first step of each warms up
            t_seq.append(t1 - t0)
            t_stk.append(t2 - t1)
        torch.testing.assert_close(b, a, rtol=1e-4, atol=0)
    ratio = statistics.median(t_seq) / statistics.median(t_stk)
    print(f"\nwidth {width}, S = {len(lams)}: seconds per step of all S, median (min–max) of {len(t_seq)}: "
          f"sequential {statistics.median(t_seq):.3f} ({min(t_seq):.3f}–{max(t_seq):.3f}), stacked "
          f"{statistics.median(t_stk):.3f} ({min(t_stk):.3f}–{max(t_stk):.3f}); stacked speed-up {ratio:.2f}×")
