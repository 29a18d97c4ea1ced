"""Real language models: a byte-level BPE on the user's corpus, memory-mapped token files, a
GPT-2-style decoder with explicit weight-decay groups trained over a (λ, seed) grid with
per-token train and held-out loss, an audit of any Hugging Face causal LM, and a ``Trainer``
callback (``imbalance.lm.callback``, imported on its own: it imports ``transformers``).

Needs the ``[lm]`` extra (``tokenizers``, ``transformers``, ``accelerate``, the shipped corpus).
"""

from .audit import AuditResult, audit, write_audit_report
from .corpus import shipped_corpus_text, write_shipped_corpus
from .losses import loss_summary, per_token_loss_sums
from .model import GPTConfig, build_gpt, decay_table, format_decay_table, param_groups
from .predictions import bigram_counts, factored_lines, t3_lines
from .report import write_sweep_report
from .sweep import LMSweepResult, lm_sweep
from .tokenizer import load_tokenizer, train_bpe
from .tokens import TokenFile, TokenSplit, encode_corpus, open_token_file
from .train import RunResult, TrainConfig, train_run

__all__ = [
    "AuditResult", "audit", "write_audit_report", "shipped_corpus_text", "write_shipped_corpus", "loss_summary",
    "per_token_loss_sums", "GPTConfig", "build_gpt", "decay_table", "format_decay_table", "param_groups",
    "write_sweep_report", "t3_lines", "bigram_counts", "factored_lines",
    "LMSweepResult", "lm_sweep", "load_tokenizer", "train_bpe", "TokenFile", "TokenSplit",
    "encode_corpus", "open_token_file", "RunResult", "TrainConfig", "train_run",
]
