"""``sweep``: train every (λ, seed) model in one batched program.

Model m = i_λ · n_seed + i_seed. Seed s owns one CPU ``torch.Generator`` that draws
its initialisation and its minibatches; every λ of that seed sees the same batches
(common random numbers), so a λ-difference is never a sampling difference.

``sweep`` reads top to bottom: ``_prepare`` (arguments validated by ``settings.sweep_settings``, stacked parameters,
optimiser, storage), ``_restore`` (a stored checkpoint or a fresh start), the training loop,
``_package``. The loop and every evaluation run inside ``numerics`` (precision, determinism).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from .._progress import progress_bar
from .batches import BatchStream, chunk_steps
from .checkpoint import SweepStore
from .devices import numerics
from .evaluate import evaluate, summarise
from .identity import sweep_config, sweep_fingerprint
from .optim import make_optimizer
from .settings import check_lams, resolve_fused, sweep_settings

__all__ = ["sweep", "SweepResult", "sweep_identity", "check_lams", "resolve_fused"]


@dataclass(frozen=True)
class SweepResult:
    """Everything on CPU; axes (n_lam, n_seed, ...) unless stated.

    ``loss_per_token``: exact expected per-token loss of the final parameters (bigram and
    feature tasks) or the training-set per-token loss (sequence tasks), (L, S, V);
    ``heldout_loss_per_token`` likewise on the held-out split (sequence tasks, else None);
    ``*_avg``: the same for the iterate average over the last ``average_last`` steps;
    ``curve_steps`` (n_eval,), ``curve_loss_per_token`` (n_eval, L, S, V) and
    ``curve_heldout`` for learning speed; ``train_loss`` (steps, L, S) minibatch losses.
    """

    lams: np.ndarray
    seeds: tuple
    token_probs: np.ndarray
    loss_per_token: np.ndarray
    heldout_loss_per_token: np.ndarray | None
    loss_per_token_avg: np.ndarray | None
    heldout_loss_per_token_avg: np.ndarray | None
    curve_steps: np.ndarray
    curve_loss_per_token: np.ndarray
    curve_heldout: np.ndarray | None
    train_loss: np.ndarray
    params: dict
    params_avg: dict | None
    optimizer: str
    batch_size: int
    lr: float


def sweep(task, lams, *, model, optimizer, steps, batch_size, lr, seeds=(0,), device="auto",
          dtype=torch.float64, out=None, eval_every=None, betas=(0.9, 0.999), eps=1e-8,
          decay_scale=None, reweight=False, average_last=0, callback=None, progress=True,
          fused="auto", precision="strict", deterministic=True) -> SweepResult:
    """Train model × (λ ∈ lams) × (seed ∈ seeds) on ``task`` in one batched loop.

    ``optimizer``: "sgd" (coupled L2) or "adamw" (decoupled); ``decay_scale``: dict
    parameter name → per-row scale (T6a, see ``frequency_decay_scale``); ``reweight``:
    weight each target v by 1/(V π_v) (token-balanced CE, T6b). ``out``: a directory
    for append-only results and checkpoints (every ``eval_every`` steps); rerunning
    with the same arguments resumes and ends identical to an uninterrupted run.
    ``callback(step)`` runs after each step (and after any checkpoint of that step).
    ``fused``: True compiles the AdamW update into one memory pass (torch.compile; the first
    steps pay the compilation; results agree with the eager update to rounding, and a fused run
    resumes only as a fused run); "auto" (the default) turns it on where it was measured to pay
    (``resolve_fused``), and the choice enters the sweep's identity.
    ``precision``: "strict" (IEEE float32, no TF32: theory checks), "tf32", or "bf16" (bfloat16
    autocast + TF32, float32 parameters; language-model runs on tensor cores); recorded in the
    sweep's identity. ``deterministic``: ``torch.use_deterministic_algorithms`` inside the run
    (bit-identical resume and λ-splitting on CUDA too; see ``imbalance.sim.devices``).
    """
    run = _prepare(task, lams, model=model, optimizer=optimizer, steps=steps, batch_size=batch_size, lr=lr,
                   seeds=seeds, device=device, dtype=dtype, out=out, eval_every=eval_every, betas=betas, eps=eps,
                   decay_scale=decay_scale, reweight=reweight, average_last=average_last, fused=fused,
                   precision=precision, deterministic=deterministic, callback=callback)
    st = _restore(run)
    bar = progress_bar(total=run.steps, initial=st.start, enabled=progress,
                       desc=f"sweep {run.optimizer} ({run.M} models)")
    with numerics(run.device, run.precision, run.deterministic):
        if not st.curves:
            st.curves.append((0, run.evaluate(run.params)))
        for step in range(st.start, run.steps):
            x, y = run.batches.batch(step)  # (M, B, ...) each
            loss, grads = _loss_and_grads(run, x, y)  # (M,), name → gradient
            run.opt.step(grads)
            st.train_loss[step] = loss
            if st.avg is not None and step >= run.steps - run.average_last:
                for k, a in st.avg.items():
                    a.add_(run.params[k])  # (M, ...)
            if (step + 1) % run.eval_every == 0 or step + 1 == run.steps:
                st.curves.append((step + 1, run.evaluate(run.params)))
                _warn_if_diverged(run, st.train_loss[step], step + 1)
                _save(run, st, step + 1)
            bar.update(1)
            if callback is not None:
                callback(step + 1)
        bar.close()
        if st.start == run.steps:
            _save(run, st, run.steps)  # restart of a finished run: make sure results.jsonl is complete
        params_avg = {k: a / run.average_last for k, a in st.avg.items()} if st.avg is not None else None
        final_avg = run.evaluate(params_avg) if params_avg is not None else None
    return _package(run, st, params_avg, final_avg)


# --- preparation -----------------------------------------------------------------------

@dataclass
class _Run:
    """A validated sweep: settings, device-resident models and optimiser, batches, storage."""

    task: object
    model: object
    lams: np.ndarray
    seeds: tuple
    optimizer: str
    steps: int
    B: int
    lr: float
    eval_every: int
    average_last: int
    device: torch.device
    dtype: torch.dtype
    precision: str
    deterministic: bool
    params: dict
    opt: object
    gens: list
    batches: BatchStream
    weights: torch.Tensor | None
    store: SweepStore | None
    pi: np.ndarray

    @property
    def L(self):
        return self.lams.size

    @property
    def S(self):
        return len(self.seeds)

    @property
    def M(self):
        return self.L * self.S

    def evaluate(self, params):
        return evaluate(self.model, params, self.task, self.L, self.S)


def sweep_identity(task, lams, *, out=None, **sweep_kw) -> dict:
    """The stored identity of ``sweep(task, lams, **sweep_kw)`` (``imbalance.sim.identity``):
    its configuration with its ``"fingerprint"``. ``device``, ``out``, ``callback`` and
    ``progress`` do not enter it, and the device need not be present here."""
    s = sweep_settings(task, lams, available=False, **sweep_kw)
    config = sweep_config(task, s.pop("lams"), **{k: v for k, v in s.items() if k != "device"})
    return {**config, "fingerprint": sweep_fingerprint(config)}


def _prepare(task, lams, *, out, **sweep_kw) -> _Run:
    s = sweep_settings(task, lams, **sweep_kw)
    lam_arr, seeds, model, dev, dtype = s["lams"], s["seeds"], s["model"], s["device"], s["dtype"]
    L, S, B = lam_arr.size, len(seeds), s["batch_size"]
    gens = [torch.Generator().manual_seed(seed) for seed in seeds]
    params = {k: v.unsqueeze(0).expand(L, *v.shape).reshape(L * S, *v.shape[1:]).to(dev).contiguous()
              for k, v in model.init(task, gens, dtype).items()}  # (M, ...)
    opt = make_optimizer(s["optimizer"], params, np.repeat(lam_arr, S), lr=s["lr"], decayed=model.decayed,
                         decay_scale=s["decay_scale"], betas=s["betas"], eps=s["eps"], fused=s["fused"])
    pi = np.asarray(task.token_probs, dtype=np.float64)
    weights = None
    if s["reweight"]:
        w = np.where(pi > 0, 1.0 / (np.count_nonzero(pi) * np.where(pi > 0, pi, 1.0)), 0.0)
        weights = torch.as_tensor(w, dtype=dtype).to(dev)  # (V,)
    probe = task.sample(torch.Generator().manual_seed(0), 1)
    chunk = chunk_steps(s["eval_every"], B * S * sum(t[0].numel() for t in probe))
    store = None
    if out is not None:
        identity = sweep_identity(task, lam_arr, **{k: v for k, v in s.items() if k != "lams"})

        store = SweepStore(out, identity)
    return _Run(task=task, model=model, lams=lam_arr, seeds=seeds, optimizer=s["optimizer"], steps=s["steps"], B=B,
                lr=s["lr"], eval_every=s["eval_every"], average_last=s["average_last"], device=dev, dtype=dtype,
                precision=s["precision"], deterministic=s["deterministic"], params=params, opt=opt, gens=gens,
                batches=BatchStream(task, gens, B, L, chunk, dev, dtype), weights=weights, store=store, pi=pi)


# --- state: fresh, restored, saved ------------------------------------------------------

@dataclass
class _State:
    start: int
    train_loss: torch.Tensor  # (steps, M) on the device
    avg: dict | None  # name → (M, ...) running sum of the last iterates
    curves: list = field(default_factory=list)  # [(step, evaluation)]


def _restore(run: _Run) -> _State:
    """A fresh state, or the one stored in ``run.store`` copied into the run's tensors."""
    st = _State(start=0, train_loss=torch.zeros(run.steps, run.M, dtype=run.dtype, device=run.device),
                avg={k: torch.zeros_like(p) for k, p in run.params.items()} if run.average_last else None)
    state = run.store.load() if run.store is not None else None
    if state is None:
        return st
    try:
        st.start = int(state["step"])
        for k in run.params:
            run.params[k].copy_(state["params"][k])
        run.opt.load_state_dict(state["opt"])
        for g, gs in zip(run.gens, state["gens"], strict=True):
            g.set_state(gs)
        st.train_loss[:st.start] = state["train_loss"].to(run.device)
        if st.avg is not None:
            for k in st.avg:
                st.avg[k].copy_(state["avg"][k])
        st.curves = [(int(s), e) for s, e in zip(state["curve_steps"], state["curve_evals"], strict=True)]
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as e:
        raise ValueError(f"{str(run.store.checkpoint_path)!r} does not hold this sweep's state "
                         f"({type(e).__name__}: {str(e)[:200]}); delete it to start over") from None
    if not 0 <= st.start <= run.steps:
        raise ValueError(f"{str(run.store.checkpoint_path)!r} holds step {st.start}, outside [0, {run.steps}]")
    return st


def _save(run: _Run, st: _State, step: int) -> None:
    if run.store is None:
        return
    run.store.save({
        "step": step, "params": {k: p.cpu() for k, p in run.params.items()},
        "opt": {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in run.opt.state_dict().items()},
        "gens": [g.get_state() for g in run.gens], "train_loss": st.train_loss[:step].cpu(),
        "avg": {k: a.cpu() for k, a in st.avg.items()} if st.avg is not None else {},
        "curve_steps": [s for s, _ in st.curves], "curve_evals": [e for _, e in st.curves]})
    run.store.append_results([summarise(s, e, run.pi, run.lams, run.seeds) for s, e in st.curves])


# --- one step, a warning, the result ----------------------------------------------------

def _loss_and_grads(run: _Run, x, y):
    if hasattr(run.model, "loss_and_grads"):
        return run.model.loss_and_grads(run.params, x, y, run.task, run.weights)
    return _autograd_step(run.model, run.params, x, y, run.task, run.weights)


def _autograd_step(model, params, x, y, task, weights):
    """Per-model mean CE (M,) and its gradient; models are independent, so ∇ Σ_m loss_m works."""
    M = y.shape[0]
    with torch.enable_grad():
        for p in params.values():
            p.requires_grad_(True)
        dtype = next(iter(params.values())).dtype  # logits in the parameters' dtype, also under autocast
        logp = torch.log_softmax(model.logits(params, x, task).to(dtype), dim=-1)  # (M, B, [T,] V)
        ce = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1).reshape(M, -1)  # (M, B·T)
        if weights is not None:
            ce = ce * weights[y.reshape(M, -1)]
        loss = ce.mean(1)  # (M,)
        grads = torch.autograd.grad(loss.sum(), list(params.values()))
    for p in params.values():
        p.requires_grad_(False)
    return loss.detach(), dict(zip(params, grads))


def _warn_if_diverged(run: _Run, loss, step: int) -> None:
    """One host read per evaluation: the first model whose minibatch loss is not finite."""
    bad = ~torch.isfinite(loss)  # (M,)
    if bad.any():
        m = int(bad.nonzero()[0])
        warnings.warn(f"sweep: training loss is not finite at step {step} for λ={run.lams[m // run.S]}, "
                      f"seed={run.seeds[m % run.S]} (diverged? lower lr)", UserWarning, stacklevel=3)


def _package(run: _Run, st: _State, params_avg, final_avg) -> SweepResult:
    L, S = run.L, run.S
    evals = [e for _, e in st.curves]
    final = evals[-1]

    def stack(key):
        return None if evals[0].get(key) is None else np.stack([e[key].numpy() for e in evals])

    def shape(d):
        return {k: v.detach().cpu().reshape(L, S, *v.shape[1:]) for k, v in d.items()}

    def np_or_none(t):
        return None if t is None else t.numpy()

    return SweepResult(
        lams=run.lams, seeds=run.seeds, token_probs=run.pi,
        loss_per_token=final["train"].numpy(), heldout_loss_per_token=np_or_none(final.get("heldout")),
        loss_per_token_avg=np_or_none(final_avg["train"]) if final_avg else None,
        heldout_loss_per_token_avg=np_or_none(final_avg.get("heldout")) if final_avg else None,
        curve_steps=np.array([s for s, _ in st.curves]), curve_loss_per_token=stack("train"),
        curve_heldout=stack("heldout"), train_loss=st.train_loss.cpu().numpy().reshape(run.steps, L, S),
        params=shape(run.params), params_avg=shape(params_avg) if params_avg is not None else None,
        optimizer=run.optimizer, batch_size=run.B, lr=run.lr)
