"""A small decoder-only transformer (nanoGPT-shaped), stacked over M models.

Every parameter has a leading model axis, so M (λ, seed) transformers run as one
batched program of einsums. Pre-LayerNorm blocks, causal self-attention, GELU MLP,
learned positions, no linear biases. Which parameters are decayed is the explicit
``decayed`` argument; the default follows nanoGPT (every matrix and embedding, no
LayerNorm gain/shift).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._validate import as_positive_int

__all__ = ["Transformer"]


class Transformer:
    kind = "sequence"

    def __init__(self, n_layer: int = 2, n_head: int = 4, d_model: int = 64, tied: bool = False,
                 init_std: float = 0.02, decayed=None):
        self.n_layer = as_positive_int(n_layer, "n_layer")
        self.n_head = as_positive_int(n_head, "n_head")
        self.d_model = as_positive_int(d_model, "d_model")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model must be a multiple of n_head, got d_model={d_model}, n_head={n_head}")
        self.tied = bool(tied)
        self.init_std = float(init_std)
        matrices = ("tok_emb", "pos_emb", "attn_qkv", "attn_out", "mlp_in", "mlp_out") + (() if tied else ("unembed",))
        self.names = matrices + ("ln1_w", "ln1_b", "ln2_w", "ln2_b", "lnf_w", "lnf_b")
        decayed = matrices if decayed is None else tuple(decayed)
        bad = [d for d in decayed if d not in self.names]
        if bad:
            raise ValueError(f"decayed must name parameters among {list(self.names)}, got decayed={decayed!r}")
        self.decayed = decayed

    def init(self, task, gens, dtype):
        V, T, d, L = task.vocab_size, task.seq_len, self.d_model, self.n_layer
        shapes = {"tok_emb": (V, d), "pos_emb": (T, d), "attn_qkv": (L, d, 3 * d), "attn_out": (L, d, d),
                  "mlp_in": (L, d, 4 * d), "mlp_out": (L, 4 * d, d)}
        if not self.tied:
            shapes["unembed"] = (V, d)
        out = {}
        for name, shape in shapes.items():
            std = self.init_std / math.sqrt(2 * L) if name in ("attn_out", "mlp_out") else self.init_std
            out[name] = torch.stack([std * torch.randn(shape, generator=g, dtype=dtype) for g in gens])  # (S, ...)
        S = len(gens)
        for name, shape in (("ln1", (L, d)), ("ln2", (L, d)), ("lnf", (d,))):
            out[f"{name}_w"] = torch.ones(S, *shape, dtype=dtype)
            out[f"{name}_b"] = torch.zeros(S, *shape, dtype=dtype)
        return out

    @staticmethod
    def _ln(h, w, b):
        """LayerNorm over the last axis; w, b (M, d) broadcast over (M, B, T, d)."""
        return F.layer_norm(h, h.shape[-1:]) * w[:, None, None] + b[:, None, None]

    def logits(self, params, x, task):
        """x (M, B, T) token ids → logits (M, B, T, V)."""
        M, B, T = x.shape
        d, H = self.d_model, self.n_head
        m = torch.arange(M, device=x.device)[:, None, None]  # (M, 1, 1)
        h = params["tok_emb"][m, x] + params["pos_emb"][:, None, :T]  # (M, B, T, d)
        for layer in range(self.n_layer):
            a = self._ln(h, params["ln1_w"][:, layer], params["ln1_b"][:, layer])  # (M, B, T, d)
            qkv = torch.einsum("mbtd,mde->mbte", a, params["attn_qkv"][:, layer])  # (M, B, T, 3d)
            q, k, v = (t.reshape(M * B, T, H, d // H).transpose(1, 2) for t in qkv.split(d, dim=-1))  # (MB, H, T, dh)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (MB, H, T, dh)
            y = y.transpose(1, 2).reshape(M, B, T, d)  # (M, B, T, d)
            h = h + torch.einsum("mbtd,mde->mbte", y, params["attn_out"][:, layer])
            a = self._ln(h, params["ln2_w"][:, layer], params["ln2_b"][:, layer])
            u = F.gelu(torch.einsum("mbtd,mde->mbte", a, params["mlp_in"][:, layer]))  # (M, B, T, 4d)
            h = h + torch.einsum("mbte,med->mbtd", u, params["mlp_out"][:, layer])
        h = self._ln(h, params["lnf_w"], params["lnf_b"])  # (M, B, T, d)
        unembed = params["tok_emb"] if self.tied else params["unembed"]  # (M, V, d)
        return torch.einsum("mbtd,mvd->mbtv", h, unembed)  # (M, B, T, V)
