"""The digit classifier that grades the course's samples: a small CNN, its training, and reading digits.

    classifier = load_classifier()            # models/digit-classifier, eval mode, CPU
    digits = classify(classifier, images)      # (N, 1, 28, 28) in [-1, 1] -> (N,) predicted digits

    python -m src.train classifier             # retrain it (about 99 % on the 1,000 held-out digits)
"""

from __future__ import annotations

import json

import torch
import torch.nn.functional as nnf
from tqdm.auto import tqdm

from src.files import repo_path
from src.mnist import HELD_OUT, NUM_CLASSES, load_mnist


class DigitClassifier(torch.nn.Module):
    """A small CNN that says which digit a 28x28 image in [-1, 1] shows; it grades the samples.

    Two 3x3 convolutions per resolution (28, 14), then a dense layer over the 7x7 map, which keeps
    where the strokes are (a global average would not: it confused 6 and 9).
    """

    def __init__(self):
        super().__init__()
        conv = lambda i, o: [torch.nn.Conv2d(i, o, 3, padding=1), torch.nn.ReLU()]  # noqa: E731
        self.net = torch.nn.Sequential(
            *conv(1, 32), *conv(32, 32), torch.nn.MaxPool2d(2),
            *conv(32, 64), *conv(64, 64), torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(64 * 7 * 7, 128), torch.nn.ReLU(), torch.nn.Dropout(0.3),
            torch.nn.Linear(128, NUM_CLASSES))

    def forward(self, x):
        return self.net(x)


def load_classifier(folder="models/digit-classifier"):
    """The course's digit classifier, in eval mode on the CPU."""
    from safetensors.torch import load_file

    model = DigitClassifier()
    model.load_state_dict(load_file(str(repo_path(folder) / "model.safetensors")))
    return model.eval()


@torch.inference_mode()
def classify(classifier, images, batch_size=500):
    """Predicted digit for each (N, 1, 28, 28) image in [-1, 1]."""
    return torch.cat([classifier(images[i:i + batch_size].float().cpu()).argmax(1)
                      for i in range(0, len(images), batch_size)])


def random_shift(x, pixels, generator):
    """Each image moved by up to `pixels` in x and y (background -1 fills the gap)."""
    B, _, H, W = x.shape
    padded = nnf.pad(x, (pixels,) * 4, value=-1.0)
    dx, dy = torch.randint(0, 2 * pixels + 1, (2, B), generator=generator)
    return torch.stack([padded[i, :, dy[i]:dy[i] + H, dx[i]:dx[i] + W] for i in range(B)])


def train_classifier(out="models/digit-classifier", epochs=12, batch_size=128, lr=2e-3, seed=0, progress=True):
    """Train the digit classifier on the train split; returns its accuracy on the 1,000 held-out digits."""
    from safetensors.torch import save_file

    from src.train import lr_at  # the same warm-up and cosine decay as the diffusion models

    torch.manual_seed(seed)
    images, labels = load_mnist("train")
    model = DigitClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    steps = epochs * (len(images) // batch_size)
    for step in tqdm(range(steps), disable=not progress, desc="classifier"):
        idx = torch.randint(0, len(images), (batch_size,), generator=g)
        x = random_shift(images[idx], 2, g)  # so it judges shapes, not pixel positions
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, 50)
        loss = nnf.cross_entropy(model(x), labels[idx])
        opt.zero_grad(); loss.backward(); opt.step()
    model.eval()
    test_x, test_y = load_mnist("test")
    accuracy = (classify(model, test_x) == test_y).float().mean().item()
    folder = repo_path(out)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(folder / "model.safetensors"))
    (folder / "accuracy.json").write_text(json.dumps({"held_out_accuracy": accuracy, "held_out": HELD_OUT,
                                                      "train_digits": len(images), "epochs": epochs}, indent=1))
    return accuracy
