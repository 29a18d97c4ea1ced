"""FairAdamW for any model with token embedding rows (Hugging Face ``PreTrainedModel`` or a module
that names its embedding/unembedding): the variant names of the command line and the groups.

``fair_adamw(groups, embedding_rows, variant, pi=..., tokens_per_batch=...)`` moves the
token-row matrices out of their (decayed) group into a group of their own with the variant's
options; every other group is left as it is. ``"adamw"`` gives the plain update (FairAdamW with
options off equals ``torch.optim.AdamW``).
"""

from __future__ import annotations

from .._validate import as_choice, as_positive_int
from ..theory.fair_decay import row_decay_scale
from .adamw import FairAdamW

__all__ = ["OPTIMIZERS", "variant_options", "token_row_params", "fair_adamw"]

OPTIMIZERS = ("adamw", "row-scaled", "lazy-decay", "lazy-moments", "coupled")


def variant_options(name: str, pi=None, tokens_per_batch=None) -> dict:
    """FairAdamW group options of a variant (``OPTIMIZERS``); "row-scaled" needs the token
    frequencies π (training split) and the tokens per batch B: λ_v ∝ ρ(B π_v) (T6)."""
    name = as_choice(name, "optimizer", set(OPTIMIZERS))
    if name == "row-scaled":
        if pi is None:
            raise ValueError("optimizer='row-scaled' needs pi (the training-split frequencies), got None")
        B = as_positive_int(tokens_per_batch, "tokens_per_batch")
        return {"row_decay_scale": row_decay_scale(pi, batch_size=B)}
    return {"adamw": {}, "lazy-decay": {"lazy": "decay"}, "lazy-moments": {"lazy": "moments"},
            "coupled": {"coupled": True}}[name]


def token_row_params(model) -> list:
    """The distinct token-row matrices (V, H) of a Hugging Face model: input and output embeddings
    (one tensor when tied)."""
    out = [model.get_input_embeddings().weight]
    head = model.get_output_embeddings()
    if head is not None and head.weight is not out[0]:
        out.append(head.weight)
    return out


def fair_adamw(groups, embedding_rows, variant: str, *, pi=None, tokens_per_batch=None, **adamw_kw):
    """FairAdamW over ``groups`` (torch parameter groups) in which the tensors ``embedding_rows`` get
    the options of ``variant`` (in a group of their own, with the weight decay of the group they were in)."""
    opts = variant_options(variant, pi, tokens_per_batch)
    ids = {id(p) for p in embedding_rows}
    out = []
    for g in groups:
        rows = [p for p in g["params"] if id(p) in ids]
        rest = [p for p in g["params"] if id(p) not in ids]
        if rows and opts:
            out.append({**g, "params": rows, **opts})
            if rest:
                out.append({**g, "params": rest})
        else:
            out.append(g)
    return FairAdamW(out, **adamw_kw)
