"""Two small ViTs trained on imagenette-64 (10 ImageNet classes, real 64x64 photos), written as a user's own
``nn.Module`` file: nothing imported beyond torch (and safetensors, only to read the weights).

- ``build()``: :class:`ImagenetteViT`, pre-norm blocks written out with timm's parameter names
  (``blocks.N.norm1/attn.qkv/attn.proj/norm2/mlp.fc1/mlp.fc2``), GELU MLP, explicit softmax attention.
- ``build_encoder()``: :class:`ImagenetteEncoderViT`, its twin on ``nn.TransformerEncoder`` with the PyTorch
  default ReLU MLP.

Both return the module with the weights ``scripts/train_imagenette.py`` trained, loaded from the safetensors
beside this file. They are deliberately imperfect (FP32 val top-1 well below 100%, see
``imagenette_fixtures.json``), so that INT8 drift shows up as disagreement instead of hiding behind a model
that is right about everything.
"""

import math
from pathlib import Path

import torch
from torch import nn

# What training fed the models: the photos as stored (already 64x64, so no resize or crop), scaled to [0, 1]
# and normalised with the ImageNet mean/std. vit-edge reads this timm-style dict to preprocess the same way.
PRETRAINED_CFG = {"input_size": (3, 64, 64), "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
                  "interpolation": "bilinear", "crop_pct": 1.0}
# Class index order of /work/shared/data/imagenette-64/classes.txt, not the sorted folder order; the class
# folders are named like these labels, which is how vit-edge maps a labelled folder onto the model's indices.
LABELS = ["tench", "english_springer", "cassette_player", "chain_saw", "church",
          "french_horn", "garbage_truck", "gas_pump", "golf_ball", "parachute"]
ARCH = dict(img_size=64, patch=8, dim=128, depth=6, heads=4, mlp_ratio=4.0, num_classes=10)


class PatchEmbed(nn.Module):
    """Non-overlapping patches to tokens: (B, 3, H, W) -> (B, H/patch * W/patch, dim)."""

    def __init__(self, patch, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class _TokenClassifier(nn.Module):
    """What both models share: patch embedding, cls token, learned position embedding, final norm and head.
    Subclasses supply ``encode`` (the transformer blocks)."""

    def __init__(self, img_size, patch, dim, num_classes):
        super().__init__()
        self.patch_embed = PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, (img_size // patch) ** 2 + 1, dim) * 0.02)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward_features(self, x):
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.norm(self.encode(x))[:, 0]

    def forward(self, x):
        return self.head(self.forward_features(x))


class Attention(nn.Module):
    """Multi-head self-attention as explicit q @ k^T -> softmax -> @ v, so the exported graph shows every step."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = 1.0 / math.sqrt(dim // heads)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ImagenetteViT(_TokenClassifier):
    pretrained_cfg = PRETRAINED_CFG
    labels = LABELS

    def __init__(self, img_size=64, patch=8, dim=128, depth=6, heads=4, mlp_ratio=4.0, num_classes=10):
        super().__init__(img_size, patch, dim, num_classes)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio) for _ in range(depth)])

    def encode(self, x):
        return self.blocks(x)


class ImagenetteEncoderViT(_TokenClassifier):
    pretrained_cfg = PRETRAINED_CFG
    labels = LABELS

    def __init__(self, img_size=64, patch=8, dim=128, depth=6, heads=4, mlp_ratio=4.0, num_classes=10):
        super().__init__(img_size, patch, dim, num_classes)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=int(dim * mlp_ratio), dropout=0.0,
                                           activation="relu", batch_first=True, norm_first=True)
        # Nested tensors only matter for padding masks, which a ViT never has.
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)

    def encode(self, x):
        return self.encoder(x)


WEIGHTS = {ImagenetteViT: "imagenette_vit.safetensors", ImagenetteEncoderViT: "imagenette_encoder_vit.safetensors"}


def _trained(cls):
    from safetensors.torch import load_file  # torch's own companion format; imported only when weights load

    model = cls(**ARCH)
    model.load_state_dict(load_file(str(Path(__file__).with_name(WEIGHTS[cls]))))
    return model.eval()


def build():
    return _trained(ImagenetteViT)


def build_encoder():
    return _trained(ImagenetteEncoderViT)
