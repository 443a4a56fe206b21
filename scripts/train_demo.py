"""Train the built-in demo model: a small ViT on scikit-learn's handwritten digits.

    python scripts/train_demo.py                  # writes vit_edge/demo/digits_vit.{safetensors,json}
    python scripts/train_demo.py --model encoder  # the tests' nn.TransformerEncoder ViT (ReLU MLP):
                                                  # writes tests/models/encoder_vit_digits.safetensors

Reproducible: fixed seeds, single-threaded deterministic torch, the same 80/20 stratified split that
``digits:train`` / ``digits:test`` give. It trains on the exact preprocessing the artifacts carry, so
the test accuracy written here is what ``vit-edge validate --data digits:test`` reports for the torch model.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from vit_edge.data import load_images
from vit_edge.demo import CONFIG, WEIGHTS
from vit_edge.demo.model import TinyViT
from vit_edge.preprocess import PreprocessConfig

ARCH = dict(img_size=32, patch=4, dim=64, depth=4, heads=4, mlp_ratio=2.0, num_classes=10)
PREPROCESS = PreprocessConfig(input_size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                              interpolation="bilinear", crop_pct=1.0, resize_mode="squash")
EPOCHS, BATCH, LR, SEED = 120, 64, 2e-3, 0


def tensors(split: str):
    images = load_images(f"digits:{split}")
    batches = list(images.batches(PREPROCESS, batch_size=512))
    x = torch.from_numpy(np.concatenate([b for b, _ in batches]))
    y = torch.from_numpy(np.concatenate([lab for _, lab in batches])).long()
    return x, y


def shift(x: torch.Tensor, gen: torch.Generator, max_px: int = 3) -> torch.Tensor:
    """Random translation by up to ``max_px`` pixels (digits are centred, so this is the useful augment)."""
    background = float((0.0 - PREPROCESS.mean[0]) / PREPROCESS.std[0])
    padded = torch.nn.functional.pad(x, [max_px] * 4, value=background)
    out = torch.empty_like(x)
    offsets = torch.randint(0, 2 * max_px + 1, (len(x), 2), generator=gen)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        out[i] = padded[i, :, dy:dy + x.shape[2], dx:dx + x.shape[3]]
    return out


def accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def encoder_model():
    path = Path(__file__).resolve().parents[1] / "tests" / "models" / "encoder_vit.py"
    spec = importlib.util.spec_from_file_location("encoder_vit", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_model(), path.with_name("encoder_vit_digits.safetensors")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["demo", "encoder"], default="demo")
    args = parser.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(SEED)
    x_train, y_train = tensors("train")
    x_test, y_test = tensors("test")
    model, weights = (TinyViT(**ARCH), WEIGHTS) if args.model == "demo" else encoder_model()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.05)
    steps = EPOCHS * ((len(x_train) + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps, pct_start=0.1)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    start = time.time()
    for epoch in range(EPOCHS):
        model.train()
        order = torch.randperm(len(x_train), generator=gen)
        for i in range(0, len(order), BATCH):
            idx = order[i:i + BATCH]
            loss = loss_fn(model(shift(x_train[idx], gen)), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if epoch % 20 == 19 or epoch == EPOCHS - 1:
            print(f"epoch {epoch + 1}: loss {loss.item():.3f} test acc {accuracy(model, x_test, y_test):.4f} "
                  f"({time.time() - start:.0f}s)")
    acc = accuracy(model, x_test, y_test)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    print(f"test accuracy {acc:.4f} on {len(x_test)} held-out digits; wrote {weights}")
    if args.model != "demo":
        return
    CONFIG.write_text(json.dumps({
        "name": "digits-vit",
        "architecture": ARCH,
        "preprocess": PREPROCESS.to_dict(),
        "labels": [str(d) for d in range(10)],
        "train": {"epochs": EPOCHS, "batch": BATCH, "lr": LR, "seed": SEED, "data": "digits:train"},
        "test_accuracy": round(acc, 4),
        "test_data": "digits:test",
        "test_samples": len(x_test),
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
