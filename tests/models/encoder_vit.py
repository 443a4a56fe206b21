"""A user's own ViT written on torch.nn.TransformerEncoder (ReLU MLP, the PyTorch default).

Loaded by the tests as ``tests/models/encoder_vit.py:make_model``. ``encoder_vit_digits.safetensors`` beside
it holds weights trained on the digits by ``scripts/train_demo.py --model encoder``.
"""

import torch
from torch import nn


class EncoderViT(nn.Module):
    # timm-style preprocessing declaration, read by vit-edge (the module knows how it must be fed).
    pretrained_cfg = {"input_size": (3, 32, 32), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
                      "interpolation": "bilinear", "crop_pct": 1.0}
    labels = [str(d) for d in range(10)]

    def __init__(self, img_size=32, patch=4, dim=64, depth=4, heads=4, num_classes=10):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, (img_size // patch) ** 2 + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0,
                                           batch_first=True, norm_first=True)  # activation: ReLU
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward_features(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.norm(self.encoder(x))[:, 0]

    def forward(self, x):
        return self.head(self.forward_features(x))


def make_model():
    return EncoderViT()
