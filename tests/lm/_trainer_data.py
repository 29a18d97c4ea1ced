"""A torch Dataset of token windows for `transformers.Trainer` tests (shared by tests/lm and tests/optim)."""

import torch


class Windows(torch.utils.data.Dataset):
    """Rows of ``w`` (n, T) as causal-LM examples; the first label is masked (never a target after the
    shift), so the Trainer counts T − 1 targets per row."""

    def __init__(self, w):
        self.w = w

    def __len__(self):
        return self.w.shape[0]

    def __getitem__(self, i):
        labels = self.w[i].clone()
        labels[0] = -100
        return {"input_ids": self.w[i], "labels": labels}
