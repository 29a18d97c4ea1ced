"""Drop-in ``torch.optim`` optimizers with fair weight decay for embedding rows.

``FairAdamW`` is ``torch.optim.AdamW`` (same parameter groups, same state keys) with three
per-group options for embedding/unembedding matrices (rows = tokens):

* ``row_decay_scale``: a per-row multiplier of the weight decay, e.g. ``row_decay_scale(counts,
  batch_size=B)`` (λ_x ∝ ρ(B π_x), which equalises the AdamW equilibrium margins);
* ``lazy``: ``"decay"`` decays a row only in steps where it receives gradient (dense Adam
  moments); ``"moments"`` also updates the moments and takes the Adam step only on those rows
  (as LazyAdam does);
* ``coupled``: one second moment shared by all rows (the mean over rows of Adam's v), as in
  Coupled Adam (Stollenwerk & Stollenwerk 2025, arXiv 2502.08441).

With every option off it performs the operations of ``torch.optim.AdamW``. The equilibrium each
option reaches in the deterministic bigram is ``imbalance.theory.fair_decay.fair_margin_law``.

``hooks.fair_adamw`` builds it for a Hugging Face model (the token rows get the options; also
``imbalance lm train --optimizer``); ``lm`` (copy-task LM) and ``real_text`` (GPT-2 on real text)
measure every variant against plain AdamW, reweighting and post-hoc logit adjustment; ``pareto``
tabulates and draws those rows; ``factored`` trains the factored bigram LM with every variant against
``imbalance.theory.fair_factored.factored_fair_adamw_equilibrium``.
"""

from ..theory.fair_decay import row_decay_scale
from .adamw import FairAdamW

__all__ = ["FairAdamW", "row_decay_scale"]
