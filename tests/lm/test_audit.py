"""The audit on a tiny randomly initialised GPT-2 saved to disk with its tokenizer."""

import sys

import numpy as np
import pytest
import torch

from imbalance.lm.audit import audit, write_audit_report
from imbalance.lm.model import GPTConfig, build_gpt

CONTEXT = 32


@pytest.fixture(scope="module")
def model_dir(tokenizer, tmp_path_factory):
    from transformers import PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("gpt2-tiny")
    build_gpt(GPTConfig(512, layers=2, width=64, heads=4, context=CONTEXT, tied=False), seed=5).save_pretrained(path)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer).save_pretrained(path)
    return path


def test_audit_matches_the_models_own_loss(model_dir, corpus_file, tokenizer, tmp_path):
    """On the first 40 windows of the text: the per-token sums equal a float64 log-softmax
    gathered at the targets and summed by token id with a dense one-hot product (float32 forward:
    agreement to ~1e-6 relative); the mean logit and the row norms equal a direct computation;
    the counts are the targets of those windows; π is counted on those windows, or on a whole
    ``freq_text``."""
    from transformers import AutoModelForCausalLM

    res = audit(model_dir, corpus_file, context=CONTEXT, batch_size=4, max_tokens=4 * 33 * 10, device="cpu",
                progress=False)
    lines = corpus_file.read_text().splitlines(keepends=True)
    ids = [t for line in lines for t in tokenizer.encode(line, add_special_tokens=False).ids]
    w = torch.tensor(ids[: 40 * (CONTEXT + 1)]).view(40, CONTEXT + 1)
    lm = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        logits = lm(input_ids=w[:, :-1]).logits.double()  # (40, T, V)
    nll = -torch.log_softmax(logits, -1).gather(-1, w[:, 1:, None])[..., 0]  # (40, T)
    onehot = torch.nn.functional.one_hot(w[:, 1:], 512).double()  # (40, T, V)
    ref_sums = torch.einsum("nt,ntv->v", nll, onehot).numpy()  # (V,)
    assert res.n_tokens == 40 * CONTEXT
    np.testing.assert_array_equal(res.counts, onehot.sum((0, 1)).numpy())
    np.testing.assert_allclose(res.sums, ref_sums, rtol=1e-5, atol=1e-5)
    assert res.summary["aggregate"] == pytest.approx(nll.mean().item(), rel=1e-6)
    np.testing.assert_allclose(res.mean_logit, logits.mean((0, 1)).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.unembedding_norms, lm.lm_head.weight.detach().norm(dim=1).numpy(), rtol=1e-6)
    counts = np.bincount(w.ravel().numpy(), minlength=512)  # π: every token of the evaluated windows
    np.testing.assert_allclose(res.token_probs, counts / counts.sum())
    whole = audit(model_dir, corpus_file, freq_text=corpus_file, context=CONTEXT, batch_size=4, max_tokens=4 * 33,
                  device="cpu", progress=False)
    counts = np.bincount(np.array(ids), minlength=512)  # π from a whole frequency text
    np.testing.assert_allclose(whole.token_probs, counts / counts.sum())
    report = write_audit_report(res, tmp_path / "audit")
    assert "token-balanced" in report.read_text() and (tmp_path / "audit" / "audit.png").stat().st_size > 0


@pytest.mark.parametrize("workers", [2, 3])
def test_audit_workers(model_dir, corpus_file, workers):
    """Batches scored by several threads at once give the one-thread audit's counts exactly and its
    sums to float32 rounding (each batch's arithmetic is the same, the accumulation in stream
    order), and torch's thread count is restored afterwards — also when a batch fails, with the
    streaming reader's thread gone."""
    import threading

    before = torch.get_num_threads()
    torch.set_num_threads(4)  # so that sharing the threads out changes the count
    try:
        kw = dict(context=CONTEXT, batch_size=2, max_tokens=2 * 33 * 9, device="cpu", progress=False, cache_dir=None)
        ref = audit(model_dir, corpus_file, workers=1, **kw)
        res = audit(model_dir, corpus_file, workers=workers, **kw)
        assert torch.get_num_threads() == 4
        np.testing.assert_array_equal(res.counts, ref.counts)
        np.testing.assert_allclose(res.sums, ref.sums, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(res.mean_logit, ref.mean_logit, rtol=1e-6, atol=1e-7)
        assert res.n_tokens == ref.n_tokens == 9 * 2 * CONTEXT

        audit_mod = sys.modules["imbalance.lm.audit"]
        calls = []
        original = audit_mod._Scorer.__call__

        def failing(self, x, y):
            calls.append(1)
            if len(calls) == 3:
                raise RuntimeError("batch 3 failed")
            return original(self, x, y)

        threads_before = set(threading.enumerate())
        audit_mod._Scorer.__call__ = failing
        try:
            with pytest.raises(RuntimeError, match="batch 3 failed"):
                audit(model_dir, corpus_file, workers=workers, **kw)
        finally:
            audit_mod._Scorer.__call__ = original
        assert torch.get_num_threads() == 4
        assert not [t for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    finally:
        torch.set_num_threads(before)


def test_audit_bad_input(model_dir, corpus_file, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((model_dir / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="has no tokenizer"):
        audit(bare, corpus_file, device="cpu", progress=False)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        audit(tmp_path / "nowhere", corpus_file, device="cpu", progress=False)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        audit(model_dir, tmp_path / "missing.txt", device="cpu", progress=False)
    with pytest.raises(ValueError, match="exceeds the model's 32 positions"):
        audit(model_dir, corpus_file, context=64, device="cpu", progress=False)
    for name, value in (("workers", 0), ("batch_size", 0), ("max_tokens", -5), ("context", 0), ("batch_tokens", 1.5),
                        ("scheme", "deciles")):
        with pytest.raises(ValueError, match=name):
            audit(model_dir, corpus_file, device="cpu", progress=False, **{name: value})


def test_windows_across_chunks(corpus_file, tokenizer):
    """Text read and encoded in 1,000-character chunks (many background encodes) gives the
    windows of the whole text encoded at once, line by line, in order; the tail shorter than a
    batch comes as a last, smaller batch."""
    from transformers import PreTrainedTokenizerFast

    from imbalance.lm.audit import _windows

    tok = PreTrainedTokenizerFast(tokenizer_object=tokenizer)
    got = torch.cat(list(_windows(corpus_file, tok, CONTEXT, 4, None, chunk_chars=1000)))  # (n, T+1)
    lines = corpus_file.read_text().splitlines(keepends=True)
    ids = [t for line in lines for t in tokenizer.encode(line, add_special_tokens=False).ids]
    n = len(ids) // (CONTEXT + 1)
    assert got.shape == (n, CONTEXT + 1)
    np.testing.assert_array_equal(got.numpy().ravel(), ids[: n * (CONTEXT + 1)])


def _soft_capped_gpt(cfg, seed):
    """A GPT-2 whose logits are 5 tanh(z / 5) (final-logit soft-capping, as Gemma 2): not the
    output layer applied to the last hidden state, so the audit must score its logits directly."""
    from transformers import GPT2LMHeadModel

    class SoftCapped(GPT2LMHeadModel):
        def forward(self, *args, **kw):
            out = super().forward(*args, **kw)
            out.logits = 5 * torch.tanh(out.logits / 5)
            return out

    model = build_gpt(cfg, seed)
    capped = SoftCapped(model.config)
    capped.load_state_dict(model.state_dict())
    return capped


@pytest.mark.parametrize("capped", [False, True])
def test_scorer_against_the_models_logits(split, capped):
    """The audit's scorer (chunked output layer on the base model's hidden state for a plain GPT-2;
    the whole model for a soft-capped one) against the cross-entropy of the model's own logits in
    float64 and their sum over positions, on 3 batches of 3 windows (float32: ~1e-5)."""
    import contextlib

    from imbalance.lm.audit import _Scorer

    cfg = GPTConfig(512, layers=2, width=64, heads=4, context=CONTEXT, tied=not capped)
    lm = (_soft_capped_gpt(cfg, 3) if capped else build_gpt(cfg, 3)).eval()
    score = _Scorer(lm, 512, torch.device("cpu"), contextlib.nullcontext)
    score.rows = 20  # equal chunks of at most 20 (20, 20, 20, 20, 16): they do not divide the 96 positions
    w = split.windows("heldout")[:9]  # (9, T+1)
    ce, ref_ce = [], []
    with torch.no_grad():
        for b in w.split(3):
            y = b[:, 1:].reshape(-1)
            score.prepare(b[:1, :-1])
            c, part = score(b[:, :-1], y)
            score.add(part, y.numel())
            ce.append(c)
            ref_ce.append(torch.nn.functional.cross_entropy(lm(input_ids=b[:, :-1]).logits.double().reshape(
                y.numel(), -1), y, reduction="none"))
        logits = lm(input_ids=w[:, :-1]).logits.double()  # (9, T, V)
    assert score.fast is (not capped)
    np.testing.assert_allclose(torch.cat(ce).numpy(), torch.cat(ref_ce).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(score.logit_sum().numpy(), logits.sum((0, 1)).numpy(), rtol=1e-5,
                               atol=1e-5 * logits.abs().sum((0, 1)).max().item())


def test_token_cache_gives_the_streamed_audit(model_dir, corpus_file, tmp_path):
    """The whole text audited through the token cache (written on the first call, read back on
    the second) gives the audit of the text tokenised while streaming: same windows, so the same
    counts and π exactly and the same sums to float32 rounding; with ``max_tokens`` and no token
    file yet nothing is cached, with one it is read; ``freq_text`` through the cache counts the
    same π."""
    cache = tmp_path / "cache"
    kw = dict(context=CONTEXT, batch_size=4, device="cpu", progress=False)
    streamed = audit(model_dir, corpus_file, cache_dir=None, **kw)
    first = audit(model_dir, corpus_file, cache_dir=cache, **kw)
    second = audit(model_dir, corpus_file, cache_dir=cache, **kw)
    assert (streamed.token_source, first.token_source, second.token_source) == ("stream", "cache", "cache")
    assert first.encode_s > 0 and second.encode_s == 0 and streamed.encode_s == 0
    assert len(list(cache.glob("tokens-*.json"))) == 1
    for res in (first, second):
        assert res.n_tokens == streamed.n_tokens
        np.testing.assert_array_equal(res.counts, streamed.counts)
        np.testing.assert_array_equal(res.token_probs, streamed.token_probs)
        np.testing.assert_allclose(res.sums, streamed.sums, rtol=1e-6, atol=1e-6)

    fresh = tmp_path / "fresh"
    part = audit(model_dir, corpus_file, cache_dir=fresh, max_tokens=4 * 33 * 3 + 1, **kw)
    assert part.token_source == "stream" and not fresh.exists()
    part_cached = audit(model_dir, corpus_file, cache_dir=cache, max_tokens=4 * 33 * 3 + 1, **kw)
    assert part_cached.token_source == "cache" and part_cached.n_tokens == part.n_tokens == 4 * 32 * 4
    np.testing.assert_array_equal(part_cached.counts, part.counts)
    np.testing.assert_allclose(part_cached.sums, part.sums, rtol=1e-6, atol=1e-6)

    freq_streamed = audit(model_dir, corpus_file, freq_text=corpus_file, cache_dir=None, max_tokens=4 * 33, **kw)
    freq_cached = audit(model_dir, corpus_file, freq_text=corpus_file, cache_dir=cache, max_tokens=4 * 33, **kw)
    np.testing.assert_array_equal(freq_cached.token_probs, freq_streamed.token_probs)


def test_token_cache_bad_or_unwritable(model_dir, corpus_file, tmp_path):
    kw = dict(context=CONTEXT, batch_size=4, device="cpu", progress=False)
    with pytest.raises(ValueError, match="cache_dir must be"):
        audit(model_dir, corpus_file, cache_dir=3, **kw)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    with pytest.warns(UserWarning, match="not usable"):
        res = audit(model_dir, corpus_file, cache_dir=blocked, **kw)
    assert res.token_source == "stream" and res.n_tokens > 0
