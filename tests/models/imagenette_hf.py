"""The trained imagenette ViT fixture (``imagenette_vit.py:build``) as a Hugging Face
``ViTForImageClassification`` directory: same weights, same function, so a test or benchmark can use a really
trained HF model without downloading one.

The fixture was written with timm's parameter names and HF ViT's architecture (pre-norm blocks, exact GELU,
cls token + learned position embedding, head on the final-norm cls token), so the conversion is a renaming,
plus splitting the fused qkv projection into HF's query/key/value. ``write(dir)`` checks the logits agree.
"""

import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def _fixture():
    sys.path.insert(0, str(HERE))
    try:
        import imagenette_vit
    finally:
        sys.path.remove(str(HERE))
    return imagenette_vit


def _hf_state(state: dict, depth: int, dim: int) -> dict:
    out = {"vit.embeddings.cls_token": state["cls_token"],
           "vit.embeddings.position_embeddings": state["pos_embed"],
           "vit.embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"],
           "vit.embeddings.patch_embeddings.projection.bias": state["patch_embed.proj.bias"],
           "vit.layernorm.weight": state["norm.weight"], "vit.layernorm.bias": state["norm.bias"],
           "classifier.weight": state["head.weight"], "classifier.bias": state["head.bias"]}
    for i in range(depth):
        src, dst = f"blocks.{i}.", f"vit.encoder.layer.{i}."
        for kind in ("weight", "bias"):
            q, k, v = state[src + f"attn.qkv.{kind}"].split(dim, dim=0)
            out.update({
                dst + f"attention.attention.query.{kind}": q,
                dst + f"attention.attention.key.{kind}": k,
                dst + f"attention.attention.value.{kind}": v,
                dst + f"attention.output.dense.{kind}": state[src + f"attn.proj.{kind}"],
                dst + f"layernorm_before.{kind}": state[src + f"norm1.{kind}"],
                dst + f"layernorm_after.{kind}": state[src + f"norm2.{kind}"],
                dst + f"intermediate.dense.{kind}": state[src + f"mlp.fc1.{kind}"],
                dst + f"output.dense.{kind}": state[src + f"mlp.fc2.{kind}"],
            })
    return {name: tensor.contiguous() for name, tensor in out.items()}


def write(directory) -> Path:
    """Write the HF directory (config.json, model.safetensors, preprocessor_config.json) and return it."""
    from safetensors.torch import save_file
    from transformers import ViTConfig, ViTForImageClassification

    fixture = _fixture()
    arch, cfg = fixture.ARCH, fixture.PRETRAINED_CFG
    source = fixture.build().eval()
    config = ViTConfig(image_size=arch["img_size"], patch_size=arch["patch"], hidden_size=arch["dim"],
                       num_hidden_layers=arch["depth"], num_attention_heads=arch["heads"],
                       intermediate_size=int(arch["dim"] * arch["mlp_ratio"]), hidden_act="gelu",
                       layer_norm_eps=1e-5, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                       num_labels=arch["num_classes"], id2label=dict(enumerate(fixture.LABELS)),
                       label2id={name: i for i, name in enumerate(fixture.LABELS)})
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # Written in the classic ViT key layout (``encoder.layer.N.attention.attention.query``): transformers 4
    # reads it as is and transformers 5 renames it on load, so one directory serves both (optimum-intel pins 4).
    config.to_json_file(directory / "config.json")
    save_file(_hf_state(source.state_dict(), arch["depth"], arch["dim"]), str(directory / "model.safetensors"),
              metadata={"format": "pt"})
    model = ViTForImageClassification.from_pretrained(directory).eval()
    x = torch.randn(4, 3, arch["img_size"], arch["img_size"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        gap = (model(pixel_values=x).logits - source(x)).abs().max().item()
    if gap > 1e-4:
        raise AssertionError(f"HF copy of the imagenette fixture differs from it by {gap:.3g}")
    size = arch["img_size"]
    (directory / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "ViTImageProcessor", "do_resize": True, "size": {"height": size, "width": size},
        "resample": 2, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": list(cfg["mean"]), "image_std": list(cfg["std"])}, indent=2))
    return directory


if __name__ == "__main__":
    print(write(sys.argv[1]))
