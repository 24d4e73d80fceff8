"""The MNIST digits the course trains and grades on: 10,000 of them in data/mnist_10k.npz, split once.

    images, labels = load_mnist("train")   # 9,000 digits: (N, 1, 28, 28) in [-1, 1], (N,) int64
    images, labels = load_mnist("test")    # the 1,000 held-out digits no model of the course saw
"""

from __future__ import annotations

import numpy as np
import torch

from src.files import repo_path

NUM_CLASSES = 10  # the digits 0-9; a class-conditional UNet has one more label, "no class" (F.null_label_of)
MNIST_FILE = "data/mnist_10k.npz"
HELD_OUT = 1000  # digits kept out of every training run, to test the classifier honestly


def load_mnist(split="train", path=MNIST_FILE):
    """MNIST digits as (N, 1, 28, 28) floats in [-1, 1] and (N,) int64 labels.

    The file is sorted by digit, so the split is a fixed shuffle (seed 0): `test` is 1,000 digits
    that no model of the course was trained on, `train` the other 9,000, `all` every digit.
    """
    data = np.load(repo_path(path))
    images = torch.from_numpy(data["images"]).float().div(127.5).sub(1).unsqueeze(1)
    labels = torch.from_numpy(data["labels"].astype(np.int64))
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    if split == "all":
        return images, labels
    if split not in ("train", "test"):
        raise ValueError(f"Unknown split {split!r}: use 'train', 'test' or 'all'.")
    keep = order[:HELD_OUT] if split == "test" else order[HELD_OUT:]
    return images[keep], labels[keep]
