"""Training one GPT-style model at one (λ, seed): AdamW with explicit decay groups, a
resumable checkpoint and per-token train and held-out loss.

Storage per run (``out``), in ``imbalance.sim.checkpoint.SweepStore``'s conventions:
config.json (what was asked; another configuration in the same directory is an error),
checkpoint.pt (model, optimiser, batch generator, step; read with ``weights_only=True``),
results.jsonl (one line per evaluation: per-bucket train and held-out loss — the learning
curves), per_token.npz (final loss sums and counts per token id, ``allow_pickle=False``) and,
when asked, model/ (``save_pretrained``, so the audit and any Hugging Face tool read it).
A killed run restarts from its last checkpoint and gives the numbers of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._progress import progress_bar
from .._validate import as_choice, as_nonnegative, as_positive, as_positive_int
from ..optim.hooks import OPTIMIZERS, fair_adamw, token_row_params
from ..sim.checkpoint import SweepStore
from ..sim.devices import resolve_device
from .losses import logits_of, loss_summary, per_token_loss_sums, token_cross_entropy
from .model import GPTConfig, build_gpt, decay_table, param_groups
from .tokens import TokenSplit

__all__ = ["TrainConfig", "RunResult", "train_run", "run_fingerprint", "lr_at", "loss_weights", "LOSS_WEIGHTINGS"]

LOSS_WEIGHTINGS = ("none", "inverse-frequency")


@dataclass(frozen=True)
class TrainConfig:
    """Model shape and optimisation of one run; ``batch_size`` in windows of ``context`` tokens."""

    layers: int = 2
    width: int = 64
    heads: int = 4
    context: int = 64
    tied: bool = True
    steps: int = 200
    batch_size: int = 16
    lr: float = 3e-3
    warmup: int = 20
    min_lr_ratio: float = 0.1
    betas: tuple = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0
    decay_embedding: bool = True
    decay_unembedding: bool = True
    eval_every: int = 50
    eval_tokens: int = 16384
    final_eval_tokens: int | None = None
    eval_batch_size: int = 32
    bucket_scheme: str = "log3"
    grad_accum: int = 1  # micro-batches per step (batch_size a multiple of it): same step, less memory
    optimizer: str = "adamw"  # or a FairAdamW variant on the token rows (imbalance.optim.hooks.OPTIMIZERS)
    loss_weighting: str = "none"  # or "inverse-frequency": target v's CE weighted by 1/(n π_v) (``loss_weights``)

    def __post_init__(self):
        for name in ("layers", "width", "heads", "context", "steps", "batch_size", "eval_every", "eval_tokens",
                     "eval_batch_size", "grad_accum"):
            as_positive_int(getattr(self, name), name)
        as_nonnegative(self.warmup, "warmup")
        as_positive(self.lr, "lr")
        as_positive(self.eps, "eps")
        as_positive(self.grad_clip, "grad_clip")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got min_lr_ratio={self.min_lr_ratio!r}")
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        as_choice(self.optimizer, "optimizer", set(OPTIMIZERS))
        as_choice(self.loss_weighting, "loss_weighting", set(LOSS_WEIGHTINGS))
        if self.batch_size % self.grad_accum:
            raise ValueError(f"batch_size must be a multiple of grad_accum, got batch_size={self.batch_size}, "
                             f"grad_accum={self.grad_accum}")

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.context

    def gpt(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(vocab_size, self.layers, self.width, self.heads, self.context, self.tied)


@dataclass(frozen=True)
class RunResult:
    lam: float
    seed: int
    curve: list  # one dict per evaluation (step, train/held-out summaries)
    heldout_sums: np.ndarray  # (V,)
    heldout_counts: np.ndarray  # (V,)
    train_sums: np.ndarray  # (V,)
    train_counts: np.ndarray  # (V,)
    decay_table: list


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from ``lr`` to ``min_lr_ratio · lr``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def config_dict(cfg: TrainConfig) -> dict:
    """The stored form of ``cfg``; ``optimizer`` and ``loss_weighting`` only when they are not the
    defaults (plain AdamW, unweighted CE), so that runs stored before the fields existed keep their identity."""
    d = dataclasses.asdict(cfg)
    if d["optimizer"] == "adamw":
        del d["optimizer"]
    if d["loss_weighting"] == "none":
        del d["loss_weighting"]
    return d


def loss_weights(cfg: TrainConfig, pi, device="cpu") -> torch.Tensor | None:
    """Per-target-id loss weights (V,) of ``cfg.loss_weighting``: None for "none"; for
    "inverse-frequency" 1/(n π_v) over the n types with π_v > 0 (0 for unseen types), the token-balanced
    CE of the copy-task LM (``imbalance.optim.lm.balanced_weights``), π = training-split frequencies."""
    if cfg.loss_weighting == "none":
        return None
    from ..optim.lm import balanced_weights

    return torch.as_tensor(balanced_weights(pi), dtype=torch.float32, device=device)  # (V,)


def run_fingerprint(split: TokenSplit, lam: float, seed: int, cfg: TrainConfig) -> str:
    meta = split.token_file.meta
    key = {"corpus": meta["corpus_sha256"], "tokenizer": meta["tokenizer_sha256"], "n_tokens": meta["n_tokens"],
           "heldout_fraction": split.heldout_fraction, "lam": float(lam), "seed": int(seed),
           "config": config_dict(cfg)}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _evaluate(model, split, cfg, device, bf16, max_tokens):
    out = {}
    for name in ("train", "heldout"):
        sums, counts = per_token_loss_sums(model, split.windows(name, max_tokens), split.vocab_size,
                                           batch_size=cfg.eval_batch_size, device=device, bf16=bf16)
        out[name] = (sums, counts)
    return out


def _summaries(ev, split, cfg):
    return {k: loss_summary(s, c, split.token_probs, scheme=cfg.bucket_scheme) for k, (s, c) in ev.items()}


def _setup(split, lam, seed, cfg, device):
    model = build_gpt(cfg.gpt(split.vocab_size), seed).to(device)
    table = decay_table(model, decay_embedding=cfg.decay_embedding, decay_unembedding=cfg.decay_unembedding)
    groups = param_groups(model, lam, decay_embedding=cfg.decay_embedding, decay_unembedding=cfg.decay_unembedding)
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    else:  # FairAdamW on the token rows: π from the training split, B = tokens per step
        opt = fair_adamw(groups, token_row_params(model), cfg.optimizer, pi=split.token_probs,
                         tokens_per_batch=cfg.tokens_per_step, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    gen = torch.Generator().manual_seed(1_000_003 * int(seed) + 7)  # batches: a stream apart from the init
    return model, opt, gen, table


def _restore(store, model, opt, gen) -> tuple[int, list]:
    """(step, learning curve so far) from the run's checkpoint, loaded into model/opt/gen."""
    state = None if store is None else store.load()
    if state is None:
        return 0, []
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    gen.set_state(state["generator"])
    return int(state["step"]), store.read_results()


def _train_step(model, fwd, opt, split, gen, cfg, device, autocast, step, weights=None) -> torch.Tensor:
    """One AdamW step on a freshly sampled batch (``grad_accum`` micro-batches); its mean (weighted) loss."""
    x, y = split.sample(gen, cfg.batch_size)  # (B, T), (B, T)
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    for g in opt.param_groups:
        g["lr"] = lr_at(step, cfg)
    opt.zero_grad(set_to_none=True)
    loss = torch.zeros((), device=device)
    for xm, ym in zip(x.chunk(cfg.grad_accum), y.chunk(cfg.grad_accum)):  # (B/k, T) each
        with autocast:
            logits = logits_of(fwd, xm)  # (B/k, T, V)
        part = token_cross_entropy(logits, ym, weights) / cfg.grad_accum
        part.backward()
        loss += part.detach()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    return loss


def train_run(split: TokenSplit, lam: float, seed: int, cfg: TrainConfig, *, out=None, device="auto",
              compile: bool = False, save_model: bool = False, progress: bool = True,
              stop_after: int | None = None) -> RunResult | None:
    """Train (or resume, or read back) the run at weight decay ``lam`` and ``seed``.

    float32 on CPU; bf16 autocast on CUDA (``compile=True`` adds ``torch.compile``).
    ``stop_after``: stop once this step's checkpoint is stored and return None (a stand-in
    for a kill, used by the resume test).
    """
    lam = as_nonnegative(lam, "lam")
    device = resolve_device(device)
    bf16 = device.type == "cuda"
    model, opt, gen, table = _setup(split, lam, seed, cfg, device)
    fp = run_fingerprint(split, lam, seed, cfg)
    store = None if out is None else SweepStore(out, {"fingerprint": fp, "lam": lam, "seed": int(seed),
                                                       "train": config_dict(cfg),
                                                       "tokens": split.token_file.meta})
    if store is not None and (Path(out) / "per_token.npz").exists():
        return _read_back(Path(out), lam, seed, store, table)
    step, curve = _restore(store, model, opt, gen)
    if step == 0 and not curve:  # the learning curves start from the initialisation
        curve.append({"step": 0, "lr": 0.0, "batch_loss": None,
                      **_summaries(_evaluate(model, split, cfg, device, bf16, cfg.eval_tokens), split, cfg)})
        if store is not None:
            store.append_results(curve[:1])
    fwd = torch.compile(model) if compile and device.type == "cuda" else model
    model.train()
    bar = progress_bar(total=cfg.steps, initial=step, desc=f"λ={lam:g} seed={seed}", unit="step", enabled=progress)
    t0, tok0 = time.perf_counter(), step
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    weights = loss_weights(cfg, split.token_probs, device)  # (V,) or None
    while step < cfg.steps:
        loss = _train_step(model, fwd, opt, split, gen, cfg, device, autocast, step, weights)
        step += 1
        bar.update(1)
        if progress and step % 10 == 0:  # .item() waits for the device: not every step
            bar.set_postfix(loss=f"{loss.item():.3f}",
                            tok_s=f"{(step - tok0) * cfg.tokens_per_step / (time.perf_counter() - t0):.0f}")
        if step % cfg.eval_every == 0 or step == cfg.steps:
            rec = {"step": step, "lr": lr_at(step - 1, cfg), "batch_loss": float(loss.item()),
                   **_summaries(_evaluate(model, split, cfg, device, bf16, cfg.eval_tokens), split, cfg)}
            curve.append(rec)
            if store is not None:
                store.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                            "generator": gen.get_state(), "step": step})
                store.append_results([rec])
            if stop_after is not None and step >= stop_after and step < cfg.steps:
                bar.close()
                return None
    bar.close()
    ev = _evaluate(model, split, cfg, device, bf16, cfg.final_eval_tokens)
    res = RunResult(lam, int(seed), curve, *ev["heldout"], *ev["train"], table)
    if store is not None:
        if save_model:
            model.save_pretrained(Path(out) / "model")
        _write_npz(Path(out) / "per_token.npz", heldout_sums=res.heldout_sums, heldout_counts=res.heldout_counts,
                   train_sums=res.train_sums, train_counts=res.train_counts)
    return res


def _write_npz(path: Path, **arrays) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _read_back(out: Path, lam, seed, store, table) -> RunResult:
    try:
        with np.load(out / "per_token.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("heldout_sums", "heldout_counts", "train_sums", "train_counts")}
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"{str(out / 'per_token.npz')!r} is not a readable per-token loss file ({e})") from None
    return RunResult(lam, int(seed), store.read_results(), decay_table=table, **arrays)
