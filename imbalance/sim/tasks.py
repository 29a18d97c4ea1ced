"""Tasks: what a model is trained on, how it is sampled, and its exact per-token loss.

Every task samples on CPU from an explicit ``torch.Generator`` (one per seed); the
sweep moves the samples to the device. Per-token loss ℓ_v is the mean cross-entropy
over occurrences of v as *target* (docs/CONTRIBUTING.md, metrics).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from .._validate import as_count_matrix, as_fraction, as_positive, as_positive_int, as_token_ids
from ..zipf import zipf_pmf

__all__ = ["BigramTask", "FeatureTask", "SequenceTask", "TokenStreamTask"]


def _unit_interval(value, name):
    value = float(value)
    if not np.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {name}={value!r}")
    return value


@dataclass(frozen=True, eq=False)
class BigramTask:
    """Next token given one context: joint law J(x, v) = P(x) q(v|x) from a count matrix.

    ``r`` is the norm of the one-hot context input (T2). ``bayes_loss`` is Σ_x P(x) H(q(·|x)).
    """

    counts: sp.csr_matrix
    r: float = 1.0
    kind: str = "bigram"

    def __post_init__(self):
        object.__setattr__(self, "counts", as_count_matrix(self.counts))
        object.__setattr__(self, "r", as_positive(self.r, "r"))
        coo = self.counts.tocoo()
        total = coo.data.sum()
        object.__setattr__(self, "_rows", torch.as_tensor(coo.row, dtype=torch.long))
        object.__setattr__(self, "_cols", torch.as_tensor(coo.col, dtype=torch.long))
        object.__setattr__(self, "_mass", torch.as_tensor(coo.data / total))  # (nnz,)
        object.__setattr__(self, "_joint_cache", {})  # (dtype, device) → dense J on that device

    # --- constructors ---------------------------------------------------------------
    @classmethod
    def from_tokens(cls, ids, vocab_size: int, r: float = 1.0) -> BigramTask:
        """Bigram counts of consecutive ids in a 1-D token stream (contexts = vocabulary)."""
        V = as_positive_int(vocab_size, "vocab_size", minimum=2)
        ids = np.asarray(ids)
        if ids.ndim != 1 or ids.size < 2 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"ids must be a 1-D integer array of length >= 2, got dtype {ids.dtype}, "
                             f"shape {ids.shape}")
        if ids.min() < 0 or ids.max() >= V:
            raise ValueError(f"ids must lie in [0, vocab_size={V}), got range [{ids.min()}, {ids.max()}]")
        counts = sp.coo_matrix((np.ones(ids.size - 1), (ids[:-1], ids[1:])), shape=(V, V)).tocsr()
        return cls(counts, r=r)

    @classmethod
    def deterministic_zipf(cls, K: int, s: float, r: float = 1.0, q: float = 0.0) -> BigramTask:
        """Context k (probability π_k ∝ (k+q)^-s) is always followed by token k (T2, T3)."""
        pi = zipf_pmf(K, s, q)
        return cls(sp.diags(pi).tocsr(), r=r)

    @classmethod
    def stochastic_zipf(cls, V: int, s: float, predictability: float, r: float = 1.0,
                        n_tokens: int | None = None, seed: int = 0) -> BigramTask:
        """Zipf(s) Markov chain: after x, repeat x w.p. α, else draw a fresh token from π.

        q(·|x) = α δ_x + (1 − α) π and P = π, so the target marginal is exactly Zipf(s)
        (π is stationary). α ∈ [0, 1] tunes predictability: the Bayes loss falls from
        H(π) at α = 0 to 0 at α = 1; every token is predictable from its context with the
        same α, rare or not. With ``n_tokens`` the counts are those of a sampled corpus of
        that many transitions (marginal Zipf within sampling error); without, the exact law.
        """
        V = as_positive_int(V, "V", minimum=2)
        alpha = _unit_interval(predictability, "predictability")
        pi = zipf_pmf(V, s)
        joint = (1.0 - alpha) * np.outer(pi, pi)  # (V, V)
        joint[np.arange(V), np.arange(V)] += alpha * pi
        if n_tokens is not None:
            n = as_positive_int(n_tokens, "n_tokens")
            rng = np.random.default_rng(seed)
            joint = rng.multinomial(n, joint.ravel() / joint.sum()).reshape(V, V).astype(np.float64)
        return cls(sp.csr_matrix(joint), r=r)

    # --- laws -----------------------------------------------------------------------
    @property
    def n_contexts(self) -> int:
        return self.counts.shape[0]

    @property
    def vocab_size(self) -> int:
        return self.counts.shape[1]

    @property
    def joint(self) -> np.ndarray:
        """J(x, v) as a dense (C, V) float64 array."""
        return np.asarray(self.counts.todense()) / self.counts.data.sum()

    @property
    def context_probs(self) -> np.ndarray:
        return self.joint.sum(1)

    @property
    def token_probs(self) -> np.ndarray:
        """π_v, the target marginal."""
        return self.joint.sum(0)

    @property
    def bayes_loss(self) -> float:
        J = self.joint
        P = J.sum(1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(J > 0, -J * np.log(J / np.where(P > 0, P, 1.0)), 0.0)
        return float(terms.sum())

    def sample(self, gen: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n i.i.d. (context, target) pairs, each (n,) long, on CPU."""
        idx = torch.multinomial(self._mass, n, replacement=True, generator=gen)  # (n,)
        return self._rows[idx], self._cols[idx]

    def loss_per_token(self, logp: torch.Tensor) -> torch.Tensor:
        """Exact ℓ_v = Σ_x J(x,v)(−log p(v|x)) / π_v from log-probabilities (..., C, V) → (..., V).

        Tokens never seen as targets (π_v = 0) get NaN.
        """
        key = (logp.dtype, str(logp.device))
        if key not in self._joint_cache:  # built and copied once per device, not every evaluation
            self._joint_cache[key] = torch.as_tensor(self.joint, dtype=logp.dtype).to(logp.device)
        J = self._joint_cache[key]  # (C, V)
        pi = J.sum(0)  # (V,)
        tot = -(J * torch.where(J > 0, logp, torch.zeros_like(logp))).sum(-2)  # (..., V)
        return tot / torch.where(pi > 0, pi, torch.full_like(pi, float("nan")))


@dataclass(frozen=True, eq=False)
class FeatureTask:
    """Fixed features for T4: n points h_i = μ_{y_i} + σ ξ_i, rescaled to ‖h_i‖ ≤ R.

    Classes y ~ Zipf(s) (exact counts n π_k, rounded, at least one per class), means μ_k
    i.i.d. uniform on the sphere of radius ``mean_norm``. Training samples minibatches
    uniformly from the n points, so the "expected loss" is exact over the finite set and
    L-BFGS can solve the very same objective.
    """

    K: int
    dim: int
    s: float = 1.0
    n: int = 2000
    sigma: float = 0.5
    R: float = 1.0
    mean_norm: float = 1.0
    seed: int = 0
    kind: str = field(default="feature", init=False)

    def __post_init__(self):
        K = as_positive_int(self.K, "K", minimum=2)
        d = as_positive_int(self.dim, "dim")
        n = as_positive_int(self.n, "n", minimum=K)
        R = as_positive(self.R, "R")
        sigma = float(self.sigma)
        if not np.isfinite(sigma) or sigma < 0:
            raise ValueError(f"sigma must be finite and >= 0, got sigma={sigma!r}")
        g = torch.Generator().manual_seed(int(self.seed))
        pi = zipf_pmf(K, self.s)
        counts = np.maximum(1, np.round(pi * n)).astype(np.int64)
        y = torch.repeat_interleave(torch.arange(K), torch.as_tensor(counts))  # (n',)
        mu = torch.randn(K, d, generator=g, dtype=torch.float64)
        mu = mu / mu.norm(dim=1, keepdim=True) * as_positive(self.mean_norm, "mean_norm")  # (K, d)
        h = mu[y] + sigma * torch.randn(y.numel(), d, generator=g, dtype=torch.float64)  # (n', d)
        norms = h.norm(dim=1, keepdim=True)
        h = h * torch.clamp(R / norms, max=1.0)  # (n', d) ‖h‖ ≤ R
        object.__setattr__(self, "features", h)
        object.__setattr__(self, "labels", y)

    @property
    def vocab_size(self) -> int:
        return self.K

    @property
    def token_probs(self) -> np.ndarray:
        return np.bincount(self.labels.numpy(), minlength=self.K) / self.labels.numel()

    def sample(self, gen: torch.Generator, n: int):
        idx = torch.randint(self.labels.numel(), (n,), generator=gen)  # (n,)
        return self.features[idx], self.labels[idx]

    def loss_per_token(self, logp: torch.Tensor) -> torch.Tensor:
        """ℓ_v from log-probabilities (..., n, K) of the whole set → (..., K)."""
        y = self.labels.to(logp.device)
        ce = -logp.gather(-1, y.expand(logp.shape[:-1]).unsqueeze(-1)).squeeze(-1)  # (..., n)
        out = torch.zeros(logp.shape[:-2] + (self.K,), dtype=logp.dtype, device=logp.device)
        out.index_add_(-1, y, ce)
        return out / torch.bincount(y, minlength=self.K).to(logp.dtype)


@dataclass(frozen=True, eq=False)
class SequenceTask:
    """Zipfian lag-``lag`` copy process with a held-out split (for language models).

    x_t = x_{t−lag} with probability α, otherwise a fresh draw from Zipf(s); the first
    ``lag`` tokens are fresh draws. The marginal of every position is exactly Zipf(s),
    every token is equally predictable (α) from ``lag`` positions back, and nothing
    beyond the unigram is predictable from the previous token alone (lag ≥ 2), so a
    model must attend back to do better than a bigram. Bayes loss per position t ≥ lag:
    −Σ_c π_c [a_c log a_c + Σ_{v≠c} (1−α)π_v log((1−α)π_v)], a_c = α + (1−α)π_c.
    """

    V: int
    s: float = 1.0
    predictability: float = 0.8
    lag: int = 3
    seq_len: int = 32
    n_train: int = 2048
    n_heldout: int = 512
    seed: int = 0
    kind: str = field(default="sequence", init=False)

    def __post_init__(self):
        V = as_positive_int(self.V, "V", minimum=2)
        alpha = _unit_interval(self.predictability, "predictability")
        lag = as_positive_int(self.lag, "lag")
        T = as_positive_int(self.seq_len, "seq_len", minimum=lag + 1)
        pi = torch.as_tensor(zipf_pmf(V, self.s))
        g = torch.Generator().manual_seed(int(self.seed))
        splits = []
        for n in (as_positive_int(self.n_train, "n_train"), as_positive_int(self.n_heldout, "n_heldout")):
            fresh = torch.multinomial(pi, n * (T + 1), replacement=True, generator=g).view(n, T + 1)
            copy = torch.rand(n, T + 1, generator=g, dtype=torch.float64) < alpha  # (n, T+1)
            x = fresh.clone()
            for t in range(lag, T + 1):
                x[:, t] = torch.where(copy[:, t], x[:, t - lag], fresh[:, t])
            splits.append(x)
        object.__setattr__(self, "train", splits[0])  # (n_train, T+1)
        object.__setattr__(self, "heldout", splits[1])  # (n_heldout, T+1)
        object.__setattr__(self, "_pi", pi.numpy())

    @property
    def vocab_size(self) -> int:
        return self.V

    @property
    def token_probs(self) -> np.ndarray:
        return self._pi

    @property
    def bayes_loss(self) -> float:
        """Entropy rate of positions t ≥ lag (nats)."""
        pi, a = self._pi, float(self.predictability)
        rest = (1 - a) * pi
        with np.errstate(divide="ignore", invalid="ignore"):
            rest_ent = np.where(rest > 0, -rest * np.log(rest), 0.0)
        ac = a + rest
        per_c = -ac * np.log(ac) + rest_ent.sum() - rest_ent
        return float((pi * per_c).sum())

    def sample(self, gen: torch.Generator, n: int):
        idx = torch.randint(self.train.shape[0], (n,), generator=gen)  # (n,)
        x = self.train[idx]  # (n, T+1)
        return x[:, :-1], x[:, 1:]


@dataclass(frozen=True, eq=False)
class TokenStreamTask:
    """Language modelling on a 1-D token id stream (a user's corpus), with a held-out split.

    The stream is split once, contiguously: the first ``1 − heldout_fraction`` of it trains,
    the rest is held out, so no window spans both and no text is in both. Training samples
    windows of ``seq_len + 1`` tokens at uniformly random offsets inside the training split
    (inputs the first ``seq_len``, targets shifted by one); ``train`` and ``heldout`` are the
    non-overlapping windows of each split, (n, seq_len + 1), used for evaluation.
    ``token_probs`` are the token frequencies of the training split (a type that only occurs
    in the held-out split gets π = 0). The same interface as :class:`SequenceTask`.
    """

    ids: np.ndarray
    vocab_size: int
    seq_len: int = 16
    heldout_fraction: float = 0.2
    kind: str = field(default="sequence", init=False)

    def __post_init__(self):
        V = as_positive_int(self.vocab_size, "vocab_size", minimum=2)
        T = as_positive_int(self.seq_len, "seq_len")
        frac = as_fraction(self.heldout_fraction, "heldout_fraction")
        ids = as_token_ids(self.ids, V, "ids", min_length=2 * (T + 1))
        n_held = int(round(frac * ids.size))
        n_train = ids.size - n_held
        if min(n_train, n_held) < T + 1:
            raise ValueError(f"ids holds {ids.size} tokens: heldout_fraction={frac!r} leaves {n_train} training and "
                             f"{n_held} held-out tokens, and each split needs at least seq_len + 1 = {T + 1}")
        stream = torch.as_tensor(ids.copy())  # (N,)
        train, held = stream[:n_train], stream[n_train:]
        chop = lambda x: x[: x.numel() // (T + 1) * (T + 1)].view(-1, T + 1)  # noqa: E731
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "vocab_size", V)
        object.__setattr__(self, "seq_len", T)
        object.__setattr__(self, "heldout_fraction", frac)
        object.__setattr__(self, "train_stream", train)  # (n_train_tokens,)
        object.__setattr__(self, "train", chop(train))  # (n_train, T+1)
        object.__setattr__(self, "heldout", chop(held))  # (n_heldout, T+1)
        object.__setattr__(self, "_window", torch.arange(T + 1))  # (T+1,)
        object.__setattr__(self, "_pi", np.bincount(train.numpy(), minlength=V) / train.numel())

    @property
    def V(self) -> int:
        return self.vocab_size

    @property
    def n_train(self) -> int:
        return self.train.shape[0]

    @property
    def n_heldout(self) -> int:
        return self.heldout.shape[0]

    @property
    def token_probs(self) -> np.ndarray:
        return self._pi

    def sample(self, gen: torch.Generator, n: int):
        start = torch.randint(self.train_stream.numel() - self.seq_len, (n,), generator=gen)  # (n,)
        x = self.train_stream[start.unsqueeze(1) + self._window]  # (n, T+1)
        return x[:, :-1], x[:, 1:]
