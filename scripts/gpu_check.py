"""The project's own GPU check: every simulation path on a device, against the CPU.

    python scripts/gpu_check.py                # on the GPU (device "cuda")
    python scripts/gpu_check.py --device cpu   # every line also runs (and must pass) on a CPU

Prints one OK/FAIL line per check and exits non-zero if any fails:

- bigram-table and transformer sweeps, eager and fused, float64 and float32, against the same
  sweep on the CPU (largest parameter difference; bit-identical on the CPU itself);
- a sweep killed at step 13 and resumed from its checkpoint on the device and on the CPU
  (bit-identical to the uninterrupted run when resumed on the device it started on);
- host–device synchronisations per training step (CUDA sync-debug mode, the difference between
  a 30-step and a 10-step sweep; 0 expected), eager and fused;
- a sweep through the local executor (a subprocess job sees this process's GPUs);
- ``imbalance reproduce --fast`` on the device;
- tokens/s of a transformer sweep on the device and on the CPU.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from imbalance.sim import BigramTable, BigramTask, SequenceTask, Transformer, sweep
from imbalance.sim.scaleout import SweepRunner

LAMS = [0.0, 0.1]
BIGRAM = BigramTask.stochastic_zipf(64, 1.1, 0.6)
LM = SequenceTask(V=64, lag=2, seq_len=16, n_train=256, n_heldout=64)


class _Kill(Exception):
    pass


def _die_at_13(step):
    if step == 13:
        raise _Kill


def _transformer():
    return Transformer(n_layer=2, n_head=2, d_model=32)


def _max_diff(a, b) -> float:
    return max(float((a.params[k] - b.params[k]).abs().max()) for k in a.params)


def _kw(model, **kw):
    return dict(model=model, optimizer="adamw", steps=30, batch_size=16, lr=1e-2, seeds=(0, 1), eval_every=10,
                progress=False, average_last=5, **kw)


def check_sweep(name, task, make_model, device, tmp, resume_on, tol, **kw) -> bool:
    """A sweep on ``device`` against the CPU; killed and resumed on each of ``resume_on``."""
    ok = True
    t0 = time.perf_counter()
    got = sweep(task, LAMS, device=device, **_kw(make_model(), **kw))
    secs = time.perf_counter() - t0
    ref = sweep(task, LAMS, device="cpu", **_kw(make_model(), **kw))
    diff = _max_diff(got, ref)
    good = diff == 0 if device == "cpu" else diff <= tol
    ok &= good
    print(f"{'OK  ' if good else 'FAIL'} {name:20s} {secs:6.1f} s  max|{device} - cpu| = {diff:.1e} (tol {tol:.0e})")
    for i, dev in enumerate(resume_on):
        out = Path(tmp) / f"{name.replace('/', '_')}{i}"
        try:
            sweep(task, LAMS, device=device, out=out, callback=_die_at_13, **_kw(make_model(), **kw))
        except _Kill:
            pass
        again = sweep(task, LAMS, device=dev, out=out, **_kw(make_model(), **kw))
        bits = _max_diff(again, got) == 0 and np.array_equal(again.curve_loss_per_token, got.curve_loss_per_token,
                                                            equal_nan=True)
        good = bits if dev == device else _max_diff(again, got) <= tol
        ok &= good
        print(f"{'OK  ' if good else 'FAIL'}   resumed on {dev}: bit-identical={bits}, "
              f"max diff {_max_diff(again, got):.1e}")
    return ok


def syncs_per_step(task, make_model, device, fused) -> float:
    """CUDA synchronisations per training step (sync-debug warnings, 30 steps minus 10)."""
    counts = []
    for steps in (10, 30):
        torch.cuda.set_sync_debug_mode("warn")
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            sweep(task, LAMS, model=make_model(), optimizer="adamw", steps=steps, eval_every=steps, seeds=(0, 1),
                  batch_size=16, lr=1e-2, progress=False, device=device, fused=fused)
        torch.cuda.set_sync_debug_mode(0)
        counts.append(sum("ynchroniz" in str(x.message) for x in w))
    return (counts[1] - counts[0]) / 20


def check_local_executor(tmp) -> bool:
    try:
        res = SweepRunner("local", Path(tmp) / "runner").submit(
            "probe", BIGRAM, [0.1], model=BigramTable(), optimizer="sgd", steps=5, batch_size=8, lr=0.1,
            progress=False).result()
        print(f"OK   local executor: λ = {res.lams.tolist()}")
        return True
    except Exception as e:  # noqa: BLE001 — reported, not raised: the check goes on
        print(f"FAIL local executor: {[ln for ln in str(e).splitlines() if ln.strip()][-1][:150]}")
        return False


def tokens_per_second(device, steps=40) -> float:
    model = Transformer(n_layer=2, n_head=4, d_model=64)
    kw = dict(model=model, optimizer="adamw", batch_size=32, lr=1e-2, seeds=(0, 1, 2), dtype=torch.float32,
              progress=False, device=device, eval_every=10 ** 6)
    sweep(LM, [0.0, 0.1, 0.3, 1.0], steps=2, **kw)  # warm-up
    t0 = time.perf_counter()
    sweep(LM, [0.0, 0.1, 0.3, 1.0], steps=steps, **kw)
    return 12 * steps * 32 * LM.seq_len / (time.perf_counter() - t0)


def check_reproduce(device, tmp) -> bool:
    cmd = [sys.executable, "-m", "imbalance", "reproduce", "--fast", "--device", device,
           "--out", str(Path(tmp) / "rep")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
    good = proc.returncode == 0
    print(f"{'OK  ' if good else 'FAIL'} reproduce --fast on {device}: exit {proc.returncode}, "
          f"{time.perf_counter() - t0:.0f} s; " + " | ".join(tail))
    if not good:  # the last lines of each failed job's log say why
        for log in sorted((Path(tmp) / "rep" / "sweeps" / "jobs").glob("*_log.err")):
            lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
            if any("Error" in ln for ln in lines):
                print(f"       {log.name}: " + " | ".join(lines[-3:])[:400])
    return good


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=os.environ.get("DEV", "cuda"), help="device to check (default: cuda)")
    parser.add_argument("--skip-reproduce", action="store_true", help="leave out `imbalance reproduce --fast`")
    args = parser.parse_args(argv)
    dev = args.device
    if dev.startswith("cuda") and torch.cuda.is_available():
        print("device:", torch.cuda.get_device_name(0))
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        checks = [("bigram/eager", BIGRAM, BigramTable, (dev, "cpu"), 1e-12, {}),
                  ("bigram/fused", BIGRAM, BigramTable, (dev,), 1e-12, {"fused": True}),
                  ("lm/eager f64", LM, _transformer, (dev, "cpu"), 1e-9, {}),
                  ("lm/eager f32", LM, _transformer, (dev,), 1e-3, {"dtype": torch.float32}),
                  ("lm/fused f64", LM, _transformer, (), 1e-9, {"fused": True})]
        for name, task, make_model, resume_on, tol, kw in checks:
            try:
                ok &= check_sweep(name, task, make_model, dev, tmp, resume_on, tol, **kw)
            except Exception as e:  # noqa: BLE001 — reported, not raised: the check goes on
                ok = False
                print(f"FAIL {name:20s} {type(e).__name__}: {(str(e).splitlines() or [''])[0][:150]}")
        if dev.startswith("cuda"):
            per_step = {f"{n}{'/fused' * f}": syncs_per_step(t, m, dev, f)
                        for n, t, m in (("bigram", BIGRAM, BigramTable), ("lm", LM, _transformer))
                        for f in (False, True)}
            good = all(v == 0 for v in per_step.values())
            ok &= good
            print(f"{'OK  ' if good else 'FAIL'} synchronisations per training step: {per_step}")
        ok &= check_local_executor(tmp)
        if not args.skip_reproduce:
            ok &= check_reproduce(dev, tmp)
    rate = {d: tokens_per_second(d) for d in dict.fromkeys([dev, "cpu"])}
    print("transformer sweep (12 models, 2 layers, width 64, float32): "
          + ", ".join(f"{d} {r / 1e3:.0f} k tokens/s" for d, r in rate.items()))
    print("all checks passed" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
