"""The reference: a plain PyTorch training loop as a user would write it (BASELINES.md part A).

TensorDataset + DataLoader(batch 100, shuffle), a textbook nn.Module, Adam(1e-3), cross-entropy,
``loss.item()`` every step, evaluation on the test set after each epoch (not timed). Prints one
JSON object with per-epoch training seconds and test accuracy. Only torch is used for the
training itself (cnnlab only reads the IDX files).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


def cnn2() -> nn.Module:
    """Keras mnist_cnn layout, 1,199,882 parameters (BASELINES model 3)."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Dropout(0.25), nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(128, 10),
    )  # fmt: skip


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout))  # fmt: skip

    def forward(self, x):
        out = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(out)) + self.short(x))


class ResNet20(nn.Module):
    """ResNet-20, widths 16/32/64, 1x1 projection shortcuts: 272,186 parameters (model 6)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU())  # fmt: skip
        blocks, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                blocks.append(Block(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


MODELS = {"cnn2": cnn2, "resnet20": ResNet20}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=sorted(MODELS), required=True)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--allow-sample",
        action="store_true",
        help="use the embedded 6,000-image sample if --data-dir has no data (smoke tests)",
    )
    args = ap.parse_args()

    from cnnlab.data.datasets import load_dataset

    ds = load_dataset("fashion-mnist", args.data_dir, allow_sample=args.allow_sample)
    norm = lambda x: (x.float() / 255 - 0.2860) / 0.3530  # noqa: E731  (the usual constants)
    train = TensorDataset(norm(ds.train_images), ds.train_labels)
    test_x, test_y = norm(ds.test_images), ds.test_labels
    torch.manual_seed(args.seed)
    model = MODELS[args.model]()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(train, batch_size=100, shuffle=True)
    epochs = []
    for _ in range(args.epochs):
        model.train()
        start = time.perf_counter()
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()
        seconds = time.perf_counter() - start
        model.eval()
        with torch.no_grad():
            correct = sum((model(test_x[i : i + 1000]).argmax(1) == test_y[i : i + 1000]).sum()
                          for i in range(0, len(test_y), 1000))  # fmt: skip
        epochs.append({"seconds": seconds, "images_per_s": len(train) / seconds,
                       "test_acc": int(correct) / len(test_y)})  # fmt: skip
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"variant": "plain", "model": args.model, "params": params, "epochs": epochs}))


if __name__ == "__main__":
    main()
