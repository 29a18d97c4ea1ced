"""The callback inside a real ``Trainer``: its aggregate equals the Trainer's own eval loss."""

import numpy as np
import pytest

from imbalance.lm.callback import BucketLossCallback, bucket_eval_metrics
from imbalance.lm.losses import loss_summary, per_token_loss_sums
from imbalance.lm.model import GPTConfig, build_gpt
from tests.lm._trainer_data import Windows

pytest.importorskip("accelerate")


def test_callback_in_trainer(split, tmp_path):
    """4 steps, evaluation every 2: the bucket metrics reach log_history at steps 2 and 4; the
    callback's aggregate loss equals the Trainer's eval_loss (same windows and shift, equal
    batch sizes, so the mean of batch means is the global mean; float32: ~1e-6). The first label
    of each row is masked: this Trainer divides an evaluation batch's summed loss by the number
    of unmasked labels before the shift, which would count one target too many per row."""
    from transformers import Trainer, TrainingArguments

    train = split.windows("train", 32 * 32)[:, :-1].contiguous()  # (n, 32) inputs = labels
    ev = split.windows("heldout", 8 * 33)[:, :32].contiguous()  # (8, 32): 31 targets per row, as the Trainer's
    model = build_gpt(GPTConfig(512, layers=2, width=64, heads=4, context=32), seed=1)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=4,
                             per_device_eval_batch_size=4, eval_strategy="steps", eval_steps=2, logging_steps=2,
                             report_to=[], use_cpu=True, save_strategy="no", learning_rate=1e-3,
                             disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=Windows(train), eval_dataset=Windows(ev))
    cb = BucketLossCallback(ev, split.token_probs, batch_size=3).attach(trainer)
    trainer.train()
    logged = [h for h in trainer.state.log_history if "eval_token_balanced_loss" in h]
    assert [h["step"] for h in logged] == [2, 4]
    own = [h for h in trainer.state.log_history if "eval_loss" in h]
    for mine, theirs in zip(logged, own):
        assert mine["eval_aggregate_loss"] == pytest.approx(theirs["eval_loss"], rel=1e-5)
    final = trainer.evaluate()
    assert final["eval_token_balanced_loss"] == pytest.approx(logged[-1]["eval_token_balanced_loss"], rel=1e-9)
    sums, counts = per_token_loss_sums(model, ev, 512)
    s = loss_summary(sums, counts, split.token_probs)
    assert final["eval_bucket0_loss"] == pytest.approx(s["bucket_loss"][0], rel=1e-9)
    assert cb.windows.shape == ev.shape


def test_plain_function_bad_windows(split):
    model = build_gpt(GPTConfig(512, context=32))
    with pytest.raises(ValueError, match="windows must be"):
        bucket_eval_metrics(model, np.zeros((0, 5), dtype=int), split.token_probs)
