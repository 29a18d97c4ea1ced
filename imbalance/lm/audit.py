"""Audit of an existing causal LM: what did weight decay do to its rare tokens?

``audit(model, text)`` streams ``text`` through any Hugging Face causal LM (a local directory
with its tokenizer, or a hub name when online) in windows of the model's context and reports:
held-out per-token loss by frequency bucket (frequencies π counted on the evaluated windows
of ``text``, or on all of ``freq_text``, e.g. the training corpus); aggregate against token-balanced loss; embedding and
unembedding row norms against π (decayed rows of rare tokens shrink, T4: ‖w_v‖ ≤ 2π_v R/λ
under L2); the mean logit offset against log π (T1: without decay a bias-like logit offset
equals log π up to a constant, decay flattens it, slope < 1); and the share of the vocabulary
seen less than once per batch of ``batch_tokens`` tokens (T3's line under AdamW).

Token cache: the text (and ``freq_text``) is encoded once into a token file
(:func:`imbalance.lm.tokens.encode_corpus`, keyed by the SHA-256 of the text and of the
tokenizer) under ``cache_dir``, and every later audit of the same text with the same tokenizer —
another checkpoint, another λ of a sweep — streams its windows from that file instead of
tokenising again. With ``max_tokens`` and no token file yet, the text is tokenised as it streams
(only as far as needed, nothing cached), so a short look at a large text stays short.
"""

from __future__ import annotations

import inspect
import itertools
import os
import time
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._progress import progress_bar
from .._validate import as_choice, as_positive_int
from ..sim.devices import resolve_device
from .losses import logits_of, loss_summary
from .tokenizer import check_text_file
from .tokens import cached_token_file, encode_corpus

__all__ = ["AuditResult", "audit", "default_cache_dir", "load_causal_lm", "write_audit_report"]

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "tokenizer_config.json")


@dataclass(frozen=True)
class AuditResult:
    model: str
    n_tokens: int  # targets evaluated
    context: int
    token_probs: np.ndarray  # (V,) frequencies of the frequency text
    sums: np.ndarray  # (V,) Σ CE per target id
    counts: np.ndarray  # (V,)
    summary: dict  # loss_summary: aggregate, token_balanced, bucket_loss, ...
    embedding_norms: np.ndarray  # (V,)
    unembedding_norms: np.ndarray | None  # (V,); None when tied to the embedding
    mean_logit: np.ndarray  # (V,) logits averaged over every evaluated position
    offset_slope: float
    offset_intercept: float
    batch_tokens: int
    below_one_per_batch: float
    tokens_per_s: float  # scored target tokens per second of the streaming loop
    encode_s: float = 0.0  # seconds spent encoding the text(s) into the token cache before streaming
    token_source: str = "stream"  # "cache" (a token file, read back or written now) or "stream" (tokenised on the fly)


def load_causal_lm(model, device="cpu"):
    """(model in eval mode, fast tokenizer) from a local directory or a hub name."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(model)
    local = path.exists()
    if not local and (str(model).startswith((".", "/", "~")) or str(model).count("/") > 1):
        raise FileNotFoundError(f"model: no such directory: {str(model)!r}")
    if local:
        if not path.is_dir():
            raise ValueError(f"model must be a directory holding a Hugging Face model, got a file: {str(model)!r}")
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model directory {str(model)!r} has no config.json (not a Hugging Face model)")
        if not any((path / f).is_file() for f in _TOKENIZER_FILES):
            raise FileNotFoundError(f"model directory {str(model)!r} has no tokenizer (none of "
                                    f"{', '.join(_TOKENIZER_FILES)}); save one with tokenizer.save_pretrained")
    tok = AutoTokenizer.from_pretrained(str(model))
    if not getattr(tok, "is_fast", False):
        raise ValueError(f"the tokenizer of {str(model)!r} has no fast version")
    lm = AutoModelForCausalLM.from_pretrained(str(model)).to(device).eval()
    return lm, tok


def _encode_lines(tok, lines) -> np.ndarray:
    """Token ids of ``lines`` concatenated, through the Rust tokenizer (no special tokens)."""
    enc = tok.backend_tokenizer.encode_batch(lines, add_special_tokens=False)
    return np.fromiter(itertools.chain.from_iterable(e.ids for e in enc), dtype=np.int64)


def _read_and_encode(f, tok, chunk_chars):
    """Token ids of the next ``chunk_chars`` characters of ``f`` (whole lines); None at the end."""
    lines = f.readlines(chunk_chars)
    return _encode_lines(tok, lines) if lines else None


def _windows(text_path, tok, context, batch_size, max_tokens, chunk_chars=1 << 16):
    """Yield batches (b, context+1) int64 of consecutive windows of the text, encoded line by line.

    The next chunk of text is read and encoded in a background thread (the Rust tokenizer
    releases the GIL) while the caller runs the model on the batches of this one."""
    buf = np.zeros(0, dtype=np.int64)
    need = batch_size * (context + 1)
    used = 0
    with open(text_path, encoding="utf-8") as f, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(_read_and_encode, f, tok, chunk_chars // 8)  # a small first chunk starts soon
        while (ids := pending.result()) is not None:
            pending = pool.submit(_read_and_encode, f, tok, chunk_chars)
            buf = np.concatenate([buf, ids])
            start = 0
            while buf.size - start >= need and (max_tokens is None or used < max_tokens):
                used += need
                yield torch.from_numpy(buf[start:start + need]).view(batch_size, context + 1)
                start += need
            buf = buf[start:]
            if max_tokens is not None and used >= max_tokens:
                return
    n = buf.size // (context + 1)
    if n and (max_tokens is None or used < max_tokens):
        yield torch.from_numpy(buf[: n * (context + 1)]).view(n, context + 1)


def _id_windows(ids, context, batch_size, max_tokens):
    """The batches of :func:`_windows` cut from the token array ``ids`` (N,) instead of the text."""
    need = batch_size * (context + 1)
    n_full = ids.size // need
    if max_tokens is not None:
        n_full = min(n_full, -(-int(max_tokens) // need))
    for i in range(n_full):
        yield torch.from_numpy(ids[i * need:(i + 1) * need].astype(np.int64)).view(batch_size, context + 1)
    if max_tokens is not None and n_full * need >= max_tokens:
        return
    rest = ids[n_full * need:]
    n = rest.size // (context + 1)
    if n:
        yield torch.from_numpy(rest[: n * (context + 1)].astype(np.int64)).view(n, context + 1)


def default_cache_dir() -> Path:
    """``$IMBALANCE_CACHE_DIR``, else ``$XDG_CACHE_HOME/imbalance/tokens``, else ``~/.cache/imbalance/tokens``."""
    if os.environ.get("IMBALANCE_CACHE_DIR"):
        return Path(os.environ["IMBALANCE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "imbalance" / "tokens"


def _as_cache_dir(cache_dir):
    if cache_dir is None:
        return None
    if cache_dir == "default":
        return default_cache_dir()
    if not isinstance(cache_dir, (str, os.PathLike)):
        raise ValueError(f"cache_dir must be a directory path, 'default' or None, got cache_dir={cache_dir!r}")
    return Path(cache_dir)


def _cached_ids(text, tok, cache_dir, max_tokens, progress):
    """(token ids (N,) memmap, seconds spent encoding) from the token cache, or (None, 0) to stream.

    A token file already there is read back; without one it is written now unless ``max_tokens``
    asks for part of the text only. A cache directory that cannot be written falls back to
    streaming, with a warning."""
    if cache_dir is None:
        return None, 0.0
    backend = tok.backend_tokenizer
    if (tf := cached_token_file(text, backend, cache_dir)) is not None:
        return tf.ids, 0.0
    if max_tokens is not None:
        return None, 0.0
    t0 = time.perf_counter()
    try:
        tf = encode_corpus(text, backend, cache_dir, progress=progress)
    except OSError as e:
        warnings.warn(f"token cache {str(cache_dir)!r} not usable ({e}); tokenising while streaming", stacklevel=3)
        return None, 0.0
    return tf.ids, time.perf_counter() - t0


class _Scorer:
    """Cross-entropy per position and the sum of the logits over positions, batch by batch.

    Fast path: when the output layer is an ``nn.Linear`` applied to the base model's last hidden
    state h (checked on the first window against the model's own logits, to float rounding), the
    batches run the base model only and apply the output layer to ``rows`` positions at a time,
    each chunk's cross-entropy taken while its logits are still in cache; the logit sum is
    W (Σ h) + n b, a (d,) running sum. The (positions × V) logits of a batch are never held at
    once (on a GPU with a large vocabulary they dominate the memory), and the cross-entropy reads
    each chunk from cache instead of a second pass over all of them. Otherwise (soft-capped or
    scaled logits, a head that is not linear) every batch runs the whole model and its logits are
    summed directly."""

    def __init__(self, lm, V, device, autocast):
        """``autocast``: a callable returning a fresh autocast context (a context object keeps the
        state it restores on itself, so threads must not share one)."""
        self.lm, self.autocast = lm, autocast
        self.head = lm.get_output_embeddings()
        base = getattr(lm, getattr(lm, "base_model_prefix", ""), None)
        self.base = base if isinstance(base, torch.nn.Module) and base is not lm else None
        self.fast = None if isinstance(self.head, torch.nn.Linear) and self.base is not None else False
        # no key/value cache: nothing is generated, and building one costs a few percent of a small
        # model's forward (measured on CPU, 2 layers of width 128: 0.96–0.97× the time without it)
        self.base_kw = {"use_cache": False} if self.base is not None and "use_cache" in inspect.signature(
            self.base.forward).parameters else {}
        # at most 2²² logits (16 MB float32) per chunk, and never fewer than 512 positions: the output
        # layer timed alone on CPU (V = 2,048, width 128) ran 1.8× slower per position in chunks of 256
        # than in chunks of 1,024–2,048, and 1.7× slower again at 4,096 once a chunk leaves the cache;
        # ≥ 512 positions per chunk also keeps the output weights read once per many positions
        self.rows = max(512, (1 << 22) // V)
        self.h_sum = None
        self.n_fast = 0
        self.prepared = False
        self.direct = torch.zeros(V, dtype=torch.float64, device=device)  # (V,)

    def _full(self, x, y):
        with self.autocast():
            logits = logits_of(self.lm, x)  # (b, T, V)
        flat = logits.float().reshape(y.numel(), -1)  # (bT, V)
        return F.cross_entropy(flat, y, reduction="none"), flat.sum(0, dtype=torch.float64)

    def _decide(self, x):
        """Run the whole model on the first window ``x`` (1, T), the base model's output caught by
        a hook, and take the fast path iff the output layer of that output gives its logits."""
        caught = []
        handle = self.base.register_forward_hook(lambda m, i, out: caught.append(out[0]))
        try:
            with self.autocast():
                logits = logits_of(self.lm, x)[0].float()  # (T, V)
        finally:
            handle.remove()
        self.fast = False
        if caught and caught[-1].shape[:-1] == x.shape:
            with self.autocast():
                z = self.head(caught[-1][0]).float()  # (T, V)
            self.fast = bool((z - logits).abs().max() <= 1e-5 * logits.abs().max())

    def prepare(self, x):
        """Run the whole model once on the first window ``x`` (1, T), in the calling thread, before
        any batch is scored (any lazy set-up of the model happens here, not in several threads at
        once), and choose the path on it. Later calls do nothing."""
        if self.prepared:
            return
        if self.fast is None:
            self._decide(x)
        else:
            with torch.inference_mode(), self.autocast():
                logits_of(self.lm, x)
        self.prepared = True

    def __call__(self, x, y):
        """``x`` (b, T) inputs, ``y`` (bT,) targets → ((bT,) cross-entropy, float32; the batch's part
        of the logit sum, to hand to :meth:`add`). Keeps no state, so batches may be scored by
        several threads at once; grad and autocast modes are per thread, hence set here."""
        with torch.inference_mode():
            if not self.fast:
                return self._full(x, y)
            with self.autocast():
                h = self.base(input_ids=x, **self.base_kw)[0].reshape(y.numel(), -1)  # (bT, d)
            n = y.numel()
            ce = torch.empty(n, dtype=torch.float32, device=y.device)  # (bT,)
            step = -(-n // -(-n // self.rows))  # equal chunks of at most self.rows (no small remainder)
            for i in range(0, n, step):
                with self.autocast():
                    z = self.head(h[i:i + step])  # (step, V)
                ce[i:i + step] = F.cross_entropy(z.float(), y[i:i + step], reduction="none")
            return ce, h.sum(0, dtype=torch.float64)  # (bT,), (d,)

    def add(self, part, n):
        """Accumulate a scored batch's part of the logit sum (``n`` positions)."""
        if not self.fast:
            self.direct += part
        else:
            self.h_sum = part if self.h_sum is None else self.h_sum + part
            self.n_fast += n

    def logit_sum(self):
        """(V,) float64: Σ over every scored position of the logits."""
        if self.h_sum is None:
            return self.direct
        b = self.head.bias
        z = self.head.weight.detach().double() @ self.h_sum  # (V,)
        return self.direct + (z if b is None else z + self.n_fast * b.detach().double())


def _done(value) -> Future:
    """A future already holding ``value`` (a batch scored in the calling thread)."""
    fut = Future()
    fut.set_result(value)
    return fut


def _score_stream(batches, score, V, device, workers, model_name, progress):
    """Score every batch of ``batches`` with ``score``, ``workers`` at once (each by its own thread,
    torch's intra-op threads shared out among them and restored afterwards, also on error), and
    accumulate in stream order: (Σ CE per target id (V,) float64, counts per target id (V,), counts of
    every token of the windows (V,), on the CPU)."""
    sums = torch.zeros(V, dtype=torch.float64, device=device)  # (V,)
    counts = torch.zeros(V, dtype=torch.int64, device=device)  # (V,)
    stream_counts = torch.zeros(V, dtype=torch.int64)  # (V,)
    bar = progress_bar(desc="audit", unit="tok", unit_scale=True, enabled=progress)
    pending = deque()  # (targets, future) of batches in flight, in stream order

    def drain(keep):
        while len(pending) > keep:
            y, fut = pending.popleft()
            ce, part = fut.result()
            sums.index_add_(0, y, ce.double())
            counts.index_add_(0, y, torch.ones_like(y))
            score.add(part, y.numel())
            bar.update(y.numel())

    threads = torch.get_num_threads()
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    try:
        if pool is not None:  # process-wide: other threads running torch meanwhile get the reduced count too
            torch.set_num_threads(max(1, threads // workers))
        for w in batches:
            if int(w.max()) >= V:
                raise ValueError(f"the tokenizer of {model_name!r} produced id {int(w.max())}, beyond the model's "
                                 f"vocabulary of {V}")
            stream_counts += torch.bincount(w.view(-1), minlength=V)  # (V,)
            w = w.to(device, non_blocking=True)  # (b, T+1)
            score.prepare(w[:1, :-1])
            y = w[:, 1:].reshape(-1)  # (bT,)
            pending.append((y, pool.submit(score, w[:, :-1], y) if pool is not None else _done(score(w[:, :-1], y))))
            drain(2 * workers - 1)
        drain(0)
    finally:
        try:
            if pool is not None:
                for _, fut in pending:
                    fut.cancel()
                pool.shutdown(wait=True)
            if hasattr(batches, "close"):
                batches.close()  # the streaming reader's own thread and file, also when a batch failed
            bar.close()
        finally:
            torch.set_num_threads(threads)
    return sums, counts, stream_counts


def _count_tokens(text_path, tok, V, cache_dir=None, progress=False):
    """(counts (V,) of the token ids of the whole text, ids ≥ V dropped; seconds spent encoding into the cache)."""
    counts = np.zeros(V, dtype=np.int64)
    ids, encode_s = _cached_ids(text_path, tok, cache_dir, None, progress)
    if ids is not None:
        for i in range(0, ids.size, 1 << 24):
            counts += np.bincount(ids[i:i + (1 << 24)], minlength=V)[:V]
        return counts, encode_s
    with open(text_path, encoding="utf-8") as f:
        while lines := f.readlines(1 << 20):
            counts += np.bincount(_encode_lines(tok, lines), minlength=V)[:V]
    return counts, 0.0


@torch.inference_mode()
def audit(model, text, *, freq_text=None, context: int | None = None, batch_size: int = 8,
          batch_tokens: int = 500_000, max_tokens: int | None = None, device="auto", scheme: str = "log3",
          progress: bool = True, cache_dir="default", workers: int | None = None) -> AuditResult:
    """Stream ``text`` through ``model`` (see the module docstring) and measure.

    ``cache_dir``: where token files are kept ("default": :func:`default_cache_dir`; None: no
    cache, the text is tokenised while it streams). ``workers``: batches scored at once, each by
    its own thread, torch's intra-op threads shared out among them for the audit's duration
    (default: on CPU torch's thread count, at most 4; on a GPU 1). On CPU this uses the cores
    better than one batch at a time with every thread inside each operation (measured on 2
    cores, GPT-2 models of 2 layers × 128 and 4 × 256 at V = 2,048: 1.1–1.3× the tokens/s); the
    cost is memory, one batch's activations per worker, hence the default's cap. Results do not
    depend on ``workers`` beyond float rounding inside a batch (batches are accumulated in
    stream order)."""
    text = check_text_file(text, "text")
    freq_path = check_text_file(freq_text, "freq_text") if freq_text is not None else None
    cache = _as_cache_dir(cache_dir)
    device = resolve_device(device)
    if workers is None:
        workers = min(torch.get_num_threads(), 4) if device.type == "cpu" else 1
    workers = as_positive_int(workers, "workers")
    scheme = as_choice(scheme, "scheme", {"log3", "equal_mass"})
    batch_size = as_positive_int(batch_size, "batch_size")
    batch_tokens = as_positive_int(batch_tokens, "batch_tokens")
    max_tokens = None if max_tokens is None else as_positive_int(max_tokens, "max_tokens")
    context = None if context is None else as_positive_int(context, "context")
    lm, tok = load_causal_lm(model, device)
    n_pos = getattr(lm.config, "max_position_embeddings", None) or getattr(lm.config, "n_positions", 1024)
    T = int(context or min(n_pos, 1024))
    if T > n_pos:
        raise ValueError(f"context={T} exceeds the model's {n_pos} positions")
    emb = lm.get_input_embeddings().weight
    out_emb = lm.get_output_embeddings()
    V = emb.shape[0] if out_emb is None else out_emb.weight.shape[0]
    bf16 = device.type == "cuda"
    score = _Scorer(lm, V, device, lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16))
    ids, encode_s = _cached_ids(text, tok, cache, max_tokens, progress)
    batches = _windows(text, tok, T, batch_size, max_tokens) if ids is None else _id_windows(ids, T, batch_size,
                                                                                           max_tokens)
    t0 = time.perf_counter()
    sums, counts, stream_counts = _score_stream(batches, score, V, device, workers, str(model), progress)
    elapsed = time.perf_counter() - t0
    n = int(counts.sum())
    if n == 0:
        raise ValueError(f"text={str(text)!r} is shorter than one window of context + 1 = {T + 1} tokens")
    if freq_path is None:
        counts_freq = stream_counts.numpy()
    else:
        counts_freq, freq_s = _count_tokens(freq_path, tok, V, cache, progress)
        encode_s += freq_s
    if counts_freq.sum() == 0:
        raise ValueError(f"freq_text={str(freq_path)!r} encodes to no tokens")
    pi = counts_freq / counts_freq.sum()
    sums_np, counts_np = sums.cpu().numpy(), counts.cpu().numpy()
    mean_logit = (score.logit_sum() / n).cpu().numpy()
    slope, intercept = _offset_fit(mean_logit, pi)
    unemb = None if out_emb is None or out_emb.weight is emb else out_emb.weight.norm(dim=1).float().cpu().numpy()
    pos = pi[pi > 0]
    return AuditResult(str(model), n, T, pi, sums_np, counts_np, loss_summary(sums_np, counts_np, pi, scheme=scheme),
                       emb.norm(dim=1).float().cpu().numpy(), unemb, mean_logit, slope, intercept,
                       int(batch_tokens), float((pos * batch_tokens < 1).mean()), n / elapsed, encode_s,
                       "stream" if ids is None else "cache")


def _offset_fit(mean_logit, pi):
    """Least-squares slope and intercept of the centred mean logit on centred log π (π > 0)."""
    seen = pi > 0
    x = np.log(pi[seen]) - np.log(pi[seen]).mean()
    y = mean_logit[seen] - mean_logit[seen].mean()
    if seen.sum() < 2 or np.ptp(x) == 0:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def write_audit_report(res: AuditResult, out) -> Path:
    """report.md with the numbers and three figures (bucket loss, row norms, logit offset)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from ..plot import use_style
    from .plots import (
        bucket_loss_bars,
        logit_offset_vs_log_frequency,
        row_norms_vs_frequency,
    )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    use_style()
    s = res.summary
    bl = np.array(s["bucket_loss"], dtype=float)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    bucket_loss_bars(axes[0], bl, s["bucket_types"], aggregate=s["aggregate"], balanced=s["token_balanced"])
    norms = {"embedding": res.embedding_norms} if res.unembedding_norms is None else {
        "embedding": res.embedding_norms, "unembedding": res.unembedding_norms}
    row_norms_vs_frequency(axes[1], res.token_probs, norms)
    seen = res.token_probs > 0
    lp = np.log(res.token_probs[seen])
    logit_offset_vs_log_frequency(axes[2], lp - lp.mean(), res.mean_logit[seen] - res.mean_logit[seen].mean(),
                                  res.offset_slope, res.offset_intercept)
    fig.tight_layout()
    fig.savefig(out / "audit.png")
    plt.close(fig)
    rows = "\n".join(f"| {b} | {n} | {t} | {'–' if not np.isfinite(v) else f'{v:.3f}'} |"
                     for b, (n, t, v) in enumerate(zip(s["bucket_types"], s["bucket_tokens"], bl)))
    md = f"""# Audit of {res.model}

{res.n_tokens:,} target tokens in windows of {res.context}; {res.tokens_per_s:,.0f} tokens/s
(tokens {"read from the token cache" if res.token_source == "cache" else "tokenised while streaming"}{
f", text encoded in {res.encode_s:.1f} s first" if res.encode_s > 0 else ""}).

- aggregate loss {s['aggregate']:.4f} nats, token-balanced loss {s['token_balanced']:.4f} nats
  ({s['n_types_evaluated']} token types evaluated)
- mean logit offset against log π: slope {res.offset_slope:.3f} (1 = the unigram prior log π; decay flattens it)
- vocabulary types seen less than once per batch of {res.batch_tokens:,} tokens: {res.below_one_per_batch:.1%}

| bucket | token types | target tokens | loss (nats) |
|---|---:|---:|---:|
{rows}

![bucket loss, row norms, logit offset](audit.png)
"""
    (out / "report.md").write_text(md)
    return out / "report.md"
