"""Command line verbs ``imbalance lm train`` and ``imbalance lm audit``.

``add_lm_commands(subparsers)`` adds the ``lm`` command to an argparse subparsers object; the
chosen verb's handler is ``args.lm_handler(args)`` (returns the exit status). ``main(argv)``
runs the verbs on their own (``python -m imbalance.lm.cli lm train ...``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_lm_commands", "main"]

_THEORY_MAX_VOCAB = 4096


def _floats(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not vals:
        raise argparse.ArgumentTypeError("expected at least one value")
    return vals


def _add_train(sub) -> None:
    from ..optim.hooks import OPTIMIZERS
    from ..sim.scaleout import EXECUTORS
    from .train import LOSS_WEIGHTINGS

    p = sub.add_parser("train", help="train GPT-style models over a weight-decay grid and write the report",
                       description="Tokenise a corpus with a byte-level BPE (or --tokenizer), train a GPT-2-style "
                                   "model at every (λ, seed), write OUT/report.md, figures and results.jsonl. Every "
                                   "run is stored under OUT/runs/ and resumes where it stopped.")
    p.add_argument("--text", type=Path, default=None, help="UTF-8 corpus (default: the shipped King James Bible)")
    p.add_argument("--corpus-chars", type=int, default=None, metavar="N", help="without --text: use the whole "
                   "lines within the first N characters of the shipped corpus")
    p.add_argument("--tokenizer", type=Path, default=None, help="tokenizer.json or a Hugging Face tokenizer "
                   "directory to use instead of training a BPE")
    p.add_argument("--vocab", type=int, default=8192, help="BPE vocabulary size (default: %(default)s)")
    p.add_argument("--lams", type=_floats, default=[0.0, 0.1, 0.3, 1.0], help="weight decays (default: 0,0.1,0.3,1)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per λ (default: %(default)s)")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--untied", action="store_true", help="separate embedding and unembedding matrices")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-tokens", type=int, default=8192, help="tokens per step (a multiple of --context)")
    p.add_argument("--grad-accum", type=int, default=1, metavar="K", help="split each step's batch into K "
                   "micro-batches (same update, less memory)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--eval-tokens", type=int, default=32768, help="tokens per split at each curve point")
    p.add_argument("--final-eval-tokens", type=int, default=None, help="tokens per split at the end (default: all)")
    p.add_argument("--heldout-fraction", type=float, default=0.1)
    p.add_argument("--optimizer", default="adamw", choices=OPTIMIZERS, help="AdamW, or a FairAdamW variant on the "
                   "token rows: decay scaled by ρ(Bπ), lazy decay, lazy moments, shared second moment "
                   "(default: %(default)s)")
    p.add_argument("--loss-weighting", default="none", choices=LOSS_WEIGHTINGS, help="weight each "
                   "target token's cross-entropy by 1/(n π_v) (π: training-split frequencies, n: types seen), the "
                   "token-balanced loss (default: %(default)s)")
    p.add_argument("--no-decay-embedding", action="store_true", help="exclude the token embedding from decay")
    p.add_argument("--no-decay-unembedding", action="store_true", help="exclude the unembedding from decay")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default: %(default)s)")
    p.add_argument("--compile", action="store_true", help="torch.compile on CUDA")
    p.add_argument("--save-model", action="store_true", help="save each run's model (save_pretrained) in its run "
                   "directory, for `imbalance lm audit`")
    p.add_argument("--out", type=Path, default=Path("lm-out"))
    p.add_argument("--theory-lams", type=_floats, default=None, help="L2 decays at which to solve the factored "
                   "bigram (T7) on the training stream for the report (default: 0 and three decays whose collapse "
                   "frequency is π_max/9, /27, /81)")
    p.add_argument("--no-theory", action="store_true", help=f"leave the T7/T8 solve out of the report (it is left "
                   f"out by default above a vocabulary of {_THEORY_MAX_VOCAB:,}: dense V × V SVDs)")
    g = p.add_argument_group("scale-out")
    g.add_argument("--executor", default="inline", choices=EXECUTORS, help="inline (default), local or slurm")
    g.add_argument("--lam-jobs", type=int, default=1, metavar="N", help="jobs along the λ grid")
    g.add_argument("--slurm-partition", default=None)
    g.add_argument("--slurm-time", type=int, default=60, metavar="MIN")
    g.add_argument("--slurm-gpus", type=int, default=0, metavar="N")
    g.add_argument("--slurm-cpus", type=int, default=None, metavar="N")
    g.add_argument("--slurm-mem-gb", type=float, default=None, metavar="GB")
    p.set_defaults(lm_handler=_train)


def _add_audit(sub) -> None:
    p = sub.add_parser("audit", help="per-bucket loss, row norms and logit offset of a Hugging Face causal LM",
                       description="Stream --text through MODEL (a local Hugging Face causal LM directory with its "
                                   "tokenizer, or a hub name when online) and write OUT/report.md and audit.png.")
    p.add_argument("model", help="model directory (or hub name)")
    p.add_argument("--text", type=Path, required=True, help="held-out UTF-8 text to evaluate")
    p.add_argument("--freq-text", type=Path, default=None, help="text whose token counts define π (e.g. the "
                   "training corpus; default: --text)")
    p.add_argument("--context", type=int, default=None, help="window length (default: the model's, at most 1024)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--batch-tokens", type=int, default=500_000, help="training batch in tokens, for the share of "
                   "the vocabulary seen less than once per batch (default: %(default)s)")
    p.add_argument("--max-tokens", type=int, default=None, help="evaluate at most this many tokens")
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-dir", type=Path, default=None, help="where the encoded text is kept for later audits "
                   "(default: $IMBALANCE_CACHE_DIR, else ~/.cache/imbalance/tokens)")
    p.add_argument("--no-cache", action="store_true", help="tokenise the text while streaming, keep nothing")
    p.add_argument("--workers", type=int, default=None, help="batches scored at once by their own threads "
                   "(default: on CPU torch's thread count, at most 4; on a GPU 1)")
    p.add_argument("--out", type=Path, default=Path("lm-audit"))
    p.set_defaults(lm_handler=_audit)


def add_lm_commands(subparsers) -> None:
    """Add ``lm train`` and ``lm audit`` to an argparse subparsers object."""
    lm = subparsers.add_parser("lm", help="real language models: train a weight-decay sweep, audit a model",
                               description="Real language models with a subword tokenizer.")
    sub = lm.add_subparsers(dest="lm_command", required=True)
    _add_train(sub)
    _add_audit(sub)


def _tokenizer_for(args, out: Path):
    from .tokenizer import file_sha256, load_tokenizer, train_bpe

    if args.tokenizer is not None:
        return load_tokenizer(args.tokenizer)
    path = out / "tokenizer" / f"bpe-{file_sha256(args.text)[:16]}-v{args.vocab}.json"
    return load_tokenizer(path) if path.is_file() else train_bpe(args.text, args.vocab, out=path)


def _train(args) -> int:
    from ..sim.scaleout import SlurmOptions
    from .corpus import SHIPPED_CORPUS, write_shipped_corpus
    from .model import format_decay_table
    from .report import write_sweep_report
    from .sweep import lm_sweep, run_dir
    from .tokenizer import EOS
    from .tokens import encode_corpus
    from .train import TrainConfig

    out = args.out
    corpus = SHIPPED_CORPUS if args.text is None else str(args.text)
    if args.batch_tokens % args.context or args.batch_tokens < args.context:
        raise ValueError(f"--batch-tokens must be a positive multiple of --context={args.context}, got "
                         f"{args.batch_tokens}")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if args.text is None:
        name = "kjv.txt" if args.corpus_chars is None else f"kjv-{args.corpus_chars}.txt"
        args.text = write_shipped_corpus(out / "corpus" / name, max_chars=args.corpus_chars)
        if args.corpus_chars is not None:
            corpus += f", its first {args.corpus_chars:,} characters (whole lines)"
    elif args.corpus_chars is not None:
        raise ValueError("--corpus-chars cuts the shipped corpus; with --text, cut your file yourself")
    tok = _tokenizer_for(args, out)
    tf = encode_corpus(args.text, tok, out / "tokens", progress=True)
    cfg = TrainConfig(layers=args.layers, width=args.width, heads=args.heads, context=args.context,
                      tied=not args.untied, steps=args.steps, batch_size=args.batch_tokens // args.context, lr=args.lr,
                      warmup=args.warmup, eval_every=args.eval_every, eval_tokens=args.eval_tokens,
                      final_eval_tokens=args.final_eval_tokens, decay_embedding=not args.no_decay_embedding,
                      decay_unembedding=not args.no_decay_unembedding, grad_accum=args.grad_accum,
                      optimizer=args.optimizer, loss_weighting=args.loss_weighting)
    slurm = SlurmOptions(partition=args.slurm_partition, time_min=args.slurm_time, gpus=args.slurm_gpus,
                         cpus=args.slurm_cpus, mem_gb=args.slurm_mem_gb)
    res = lm_sweep(tf, args.lams, range(args.seeds), cfg, out=out, heldout_fraction=args.heldout_fraction,
                   executor=args.executor, lam_jobs=args.lam_jobs, slurm=slurm, device=args.device,
                   compile=args.compile, save_model=args.save_model)
    if args.save_model:  # each saved model gets its tokenizer, so `imbalance lm audit RUN/model` reads it
        from transformers import PreTrainedTokenizerFast

        for lam in res.lams:
            for seed in res.seeds:
                PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS).save_pretrained(
                    run_dir(out, lam, seed) / "model")
    n_params = sum(r["numel"] for r in res.decay_table)
    header = (f"Corpus: {corpus}, {tf.n_tokens:,} tokens (vocabulary {tf.vocab_size:,}); "
              f"model: {cfg.layers} layers, width {cfg.width}, context {cfg.context}, "
              f"{'tied' if cfg.tied else 'untied'} embeddings, {n_params:,} parameters; {cfg.steps} steps of "
              f"{cfg.tokens_per_step:,} tokens, {cfg.optimizer} lr {cfg.lr:g}"
              f"{'' if cfg.loss_weighting == 'none' else ', ' + cfg.loss_weighting + ' loss weights'}.")
    print(header + "\n\n" + format_decay_table(res.decay_table))
    report = write_sweep_report(res, out, header=header, factored=_factored_lines(args, tf, cfg))
    s = res.summary("heldout")
    print(f"\n{'λ':>6} {'held-out aggregate':>20} {'token-balanced':>16}")
    for i, lam in enumerate(res.lams):
        print(f"{lam:6g} {s['aggregate'][i]:20.4f} {s['token_balanced'][i]:16.4f}")
    print(f"report: {report}")
    return 0


def _factored_lines(args, tf, cfg):
    """T7/T8 on the training stream for the report, or None (``--no-theory``, or a large vocabulary
    without ``--theory-lams``)."""
    from .predictions import bigram_counts, default_factored_lams, factored_lines
    from .tokens import TokenSplit

    if args.no_theory or (args.theory_lams is None and tf.vocab_size > _THEORY_MAX_VOCAB):
        return None
    split = TokenSplit(tf, cfg.context, args.heldout_fraction)
    lams = args.theory_lams if args.theory_lams is not None else default_factored_lams(split.token_probs,
                                                                                        tied=cfg.tied)
    print(f"solving the factored bigram (T7) at L2 λ = {', '.join(f'{v:.3g}' for v in lams)} ...", flush=True)
    return factored_lines(bigram_counts(split.train, tf.vocab_size), split.token_probs, lams, tied=cfg.tied)


def _audit(args) -> int:
    from .audit import audit, write_audit_report

    res = audit(args.model, args.text, freq_text=args.freq_text, context=args.context, batch_size=args.batch_size,
                batch_tokens=args.batch_tokens, max_tokens=args.max_tokens, device=args.device,
                cache_dir=None if args.no_cache else (args.cache_dir or "default"), workers=args.workers)
    report = write_audit_report(res, args.out)
    s = res.summary
    print(f"aggregate {s['aggregate']:.4f}  token-balanced {s['token_balanced']:.4f}  logit-offset slope "
          f"{res.offset_slope:.3f}  below one per batch {res.below_one_per_batch:.1%}  "
          f"({res.tokens_per_s:,.0f} tokens/s)")
    print(f"report: {report}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imbalance")
    add_lm_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.lm_handler(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"imbalance lm {args.lm_command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
