"""The ViT families vit-edge is checked against: one registry for the compatibility matrix and the CI tests.

Each :class:`Case` is one model (a timm name, or a small Hugging Face model built here from a config with
random weights) and how it is converted (task, input size, dynamic size). ``ci=True`` marks the one
representative per family that ``tests/test_families.py`` runs on every commit.

Hugging Face models are built from small configs with random weights, written with ``save_pretrained``
plus the family's own image-processor ``preprocessor_config.json``, and loaded through ``hf:DIR`` exactly
like a user's fine-tuned model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Case:
    id: str
    family: str
    spec: str  # timm:NAME, or hf:<builder name> resolved by hf_dir()
    task: str = "classify"
    input_size: tuple | None = None
    dynamic_size: bool = False
    model_kwargs: dict = field(default_factory=dict)
    ci: bool = False
    ci_model_kwargs: dict = field(default_factory=dict)  # CI only: fewer blocks, same code paths
    note: str = ""

    @property
    def is_hf(self) -> bool:
        return self.spec.startswith("hf:")

    def convert_kwargs(self, ci: bool = False) -> dict:
        """Keyword arguments for ``vit_edge.convert.convert`` / ``vit_edge.sources.load_model``."""
        kwargs = {"task": self.task}
        model_kwargs = {**self.model_kwargs, **(self.ci_model_kwargs if ci else {})}
        if model_kwargs:
            kwargs["model_kwargs"] = model_kwargs
        if self.input_size:
            kwargs["preprocess"] = {"input_size": tuple(self.input_size)}
        return kwargs


def _timm(family, names, ci_kwargs=None, **kw):
    """Cases for timm models; the first is the family's CI representative (built smaller in CI)."""
    return [Case(n, family, f"timm:{n}", ci=i == 0, ci_model_kwargs=(ci_kwargs or {}) if i == 0 else {}, **kw)
            for i, n in enumerate(names)]


_DEPTH2 = {"depth": 2}


# timm ships BEiT only at base size and up; the same architecture at ViT-Tiny width keeps it CPU-friendly.
_BEIT_TINY = {"embed_dim": 192, "depth": 4, "num_heads": 3}

CASES = [
    *_timm("ViT", ["vit_tiny_patch16_224", "vit_small_patch16_224", "vit_small_patch32_224",
                   "vit_small_patch8_224", "vit_tiny_r_s16_p8_224", "vit_wee_patch16_reg1_gap_256",
                   "vit_pwee_patch16_reg1_gap_256", "vit_little_patch16_reg4_gap_256",
                   "vit_relpos_small_patch16_224", "vit_srelpos_small_patch16_224",
                   "vit_small_patch16_rope_224", "vit_xsmall_patch16_clip_224",
                   "vit_medium_patch32_clip_224"], ci_kwargs=_DEPTH2),
    *_timm("DeiT", ["deit_tiny_distilled_patch16_224", "deit_tiny_patch16_224", "deit_small_patch16_224",
                    "deit_small_distilled_patch16_224"], ci_kwargs=_DEPTH2),
    *_timm("DeiT III", ["deit3_small_patch16_224", "deit3_medium_patch16_224"], ci_kwargs=_DEPTH2),
    Case("beit_base_patch16_224@tiny", "BEiT", "timm:beit_base_patch16_224", model_kwargs=_BEIT_TINY, ci=True,
         ci_model_kwargs=_DEPTH2,
         note="BEiT architecture at ViT-Tiny width/depth 4 (timm has no small BEiT)"),
    Case("beitv2_base_patch16_224@tiny", "BEiT", "timm:beitv2_base_patch16_224", model_kwargs=_BEIT_TINY,
         note="BEiT v2 architecture at ViT-Tiny width/depth 4"),
    *_timm("EVA-02", ["eva02_tiny_patch14_224", "eva02_small_patch14_224", "vit_small_patch16_dinov3"],
           ci_kwargs=_DEPTH2),
    *_timm("Swin", ["swin_tiny_patch4_window7_224", "swin_s3_tiny_224"], ci_kwargs={"depths": (1, 1, 1, 1)}),
    *_timm("Swin V2", ["swinv2_tiny_window8_256", "swinv2_tiny_window16_256", "swinv2_cr_tiny_ns_224",
                       "swinv2_cr_tiny_224"], ci_kwargs={"depths": (1, 1, 1, 1)}),
    # DINOv2 is pre-trained at 518; 224 is the usual fine-tuning size and keeps the matrix fast.
    Case("vit_small_patch14_dinov2@224", "DINOv2", "timm:vit_small_patch14_dinov2", input_size=(224, 224), ci=True,
         ci_model_kwargs=_DEPTH2),
    Case("vit_small_patch14_reg4_dinov2@224", "DINOv2", "timm:vit_small_patch14_reg4_dinov2",
         input_size=(224, 224)),
    *_timm("CaiT", ["cait_xxs24_224", "cait_xxs36_224"], ci_kwargs=_DEPTH2),
    *_timm("XCiT", ["xcit_nano_12_p16_224", "xcit_tiny_12_p16_224", "xcit_nano_12_p8_224"], ci_kwargs=_DEPTH2),
    *_timm("LeViT", ["levit_128s", "levit_128", "levit_conv_128s", "levit_192"]),
    *_timm("MobileViT", ["mobilevit_xxs", "mobilevit_xs", "mobilevitv2_050", "mobilevitv2_075"]),
    *_timm("EfficientViT", ["efficientvit_m0", "efficientvit_b0", "efficientvit_m1", "efficientvit_b1"]),
    # Hugging Face twins (small configs, random weights, loaded through hf:DIR)
    *[Case(f"hf-{n}", f"HF {label}", f"hf:{n}", ci=True) for n, label in
      [("vit", "ViT"), ("deit", "DeiT (distilled)"), ("swin", "Swin"), ("swinv2", "Swin V2"),
       ("dinov2", "DINOv2"), ("beit", "BEiT"), ("clip", "CLIP"), ("siglip", "SigLIP")]],
    # --task features
    Case("vit_small_patch14_dinov2@224 features", "features", "timm:vit_small_patch14_dinov2", task="features",
         input_size=(224, 224), ci=True, ci_model_kwargs=_DEPTH2),
    Case("hf-dinov2 features", "features", "hf:dinov2", task="features"),
    Case("hf-clip-vision-tiny features", "features", "hf:clip-vision-tiny", task="features", ci=True),
    Case("hf-clip-vit-b16-vision features", "features", "hf:clip-vit-b16-vision", task="features",
         note="CLIP ViT-B/16 vision tower + projection (image_embeds), random weights"),
    Case("hf-siglip-vision features", "features", "hf:siglip-vision", task="features"),
    Case("deit_tiny_distilled_patch16_224 features", "features", "timm:deit_tiny_distilled_patch16_224",
         task="features"),
    # other input sizes
    Case("vit_small_patch16_224@288", "resolution", "timm:vit_small_patch16_224", input_size=(288, 288)),
    Case("vit_small_patch14_dinov2@196", "resolution", "timm:vit_small_patch14_dinov2", input_size=(196, 196)),
    Case("vit_small_patch14_dinov2@280", "resolution", "timm:vit_small_patch14_dinov2", input_size=(280, 280)),
    Case("swin_tiny_patch4_window7_224@256", "resolution", "timm:swin_tiny_patch4_window7_224",
         input_size=(256, 256)),
    Case("hf-dinov2@280", "resolution", "hf:dinov2", input_size=(280, 280)),
    Case("vit_tiny_patch16_224@160", "resolution", "timm:vit_tiny_patch16_224", input_size=(160, 160)),
    # dynamic height x width
    Case("vit_tiny_patch16_224 dynamic", "dynamic size", "timm:vit_tiny_patch16_224", dynamic_size=True, ci=True,
         ci_model_kwargs=_DEPTH2,
         note="OpenVINO FP32 is exact at the export size (224: 1.4e-6) but not at others (160: 9e-3, 288: 6e-4 max "
              "abs vs ONNX Runtime): the position embedding is resampled in the graph by a bicubic Resize, and "
              "OpenVINO's cubic Resize does not reproduce torch's bicubic there; ONNX Runtime does"),
    Case("vit_small_patch14_dinov2 dynamic", "dynamic size", "timm:vit_small_patch14_dinov2",
         input_size=(224, 224), dynamic_size=True),
    Case("xcit_nano_12_p16_224 dynamic", "dynamic size", "timm:xcit_nano_12_p16_224", dynamic_size=True),
    Case("hf-dinov2 dynamic", "dynamic size", "hf:dinov2", dynamic_size=True),
    Case("levit_128s dynamic", "dynamic size", "timm:levit_128s", dynamic_size=True,
         note="expected to fail: LeViT's attention biases are tied to one resolution"),
]


def find(case_id: str) -> Case:
    return next(c for c in CASES if c.id == case_id)


# ---------------------------------------------------------------- Hugging Face models from configs


def _processor(name: str, size: int):
    import transformers as t

    if name in ("clip", "clip-vision-tiny", "clip-vit-b16-vision"):
        return t.CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    if name in ("siglip", "siglip-vision"):
        return t.SiglipImageProcessor(size={"height": size, "width": size})
    if name == "dinov2":
        return t.BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": size, "width": size},
                                   do_convert_rgb=True, image_mean=[0.485, 0.456, 0.406],
                                   image_std=[0.229, 0.224, 0.225])
    if name == "deit":
        return t.DeiTImageProcessor(size={"height": 256, "width": 256}, crop_size={"height": size, "width": size})
    if name == "beit":
        return t.BeitImageProcessor(size={"height": size, "width": size}, do_center_crop=False)
    return t.ViTImageProcessor(size={"height": size, "width": size})


def _hf_model(name: str):
    import transformers as t

    tiny = {"hidden_size": 192, "num_hidden_layers": 4, "num_attention_heads": 3, "intermediate_size": 768}
    labels = {"num_labels": 100}
    text = {"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 128,
            "vocab_size": 1000}
    if name == "vit":
        return t.ViTForImageClassification(t.ViTConfig(**tiny, image_size=224, patch_size=16, **labels)), 224
    if name == "deit":
        return t.DeiTForImageClassificationWithTeacher(t.DeiTConfig(**tiny, image_size=224, patch_size=16,
                                                                    **labels)), 224
    if name == "swin":
        return t.SwinForImageClassification(t.SwinConfig(image_size=224, embed_dim=48, depths=[1, 1, 2, 1],
                                                         num_heads=[2, 4, 8, 16], window_size=7, **labels)), 224
    if name == "swinv2":
        return t.Swinv2ForImageClassification(t.Swinv2Config(image_size=256, embed_dim=48, depths=[1, 1, 2, 1],
                                                             num_heads=[2, 4, 8, 16], window_size=8,
                                                             **labels)), 256
    if name == "dinov2":
        return t.Dinov2ForImageClassification(t.Dinov2Config(**tiny, image_size=224, patch_size=14,
                                                             **labels)), 224
    if name == "beit":
        return t.BeitForImageClassification(t.BeitConfig(**tiny, image_size=224, patch_size=16,
                                                         use_relative_position_bias=True, **labels)), 224
    if name == "clip":
        config = t.CLIPConfig(text_config=text, vision_config={**tiny, "image_size": 224, "patch_size": 16},
                              **labels)
        return t.CLIPForImageClassification(config), 224
    if name == "siglip":
        config = t.SiglipConfig(text_config=text, vision_config={**tiny, "image_size": 224, "patch_size": 16},
                                **labels)
        return t.SiglipForImageClassification(config), 224
    if name == "clip-vision-tiny":
        return t.CLIPVisionModelWithProjection(t.CLIPVisionConfig(**tiny, image_size=224, patch_size=16,
                                                                  projection_dim=128)), 224
    if name == "clip-vit-b16-vision":  # the ViT-B/16 geometry: 12 x 768, 12 heads, 512-d projection
        return t.CLIPVisionModelWithProjection(t.CLIPVisionConfig(image_size=224, patch_size=16,
                                                                  projection_dim=512)), 224
    if name == "siglip-vision":
        return t.SiglipVisionModel(t.SiglipVisionConfig(**tiny, image_size=224, patch_size=16)), 224
    raise KeyError(f"no Hugging Face builder named {name!r}")


def hf_dir(name: str, root: Path, seed: int = 0) -> Path:
    """Build (once) the small Hugging Face model ``name`` under ``root`` and return its directory."""
    import torch

    directory = Path(root) / name
    if (directory / "model.safetensors").exists() and (directory / "preprocessor_config.json").exists():
        return directory
    torch.manual_seed(seed)
    model, size = _hf_model(name)
    model.eval()
    directory.mkdir(parents=True, exist_ok=True)
    _processor(name, size).save_pretrained(directory)
    model.save_pretrained(directory)  # last: its model.safetensors marks the directory complete
    return directory


def resolve_spec(case: Case, hf_root: Path) -> str:
    """The vit-edge MODEL spec of ``case`` (building its Hugging Face directory when needed)."""
    return f"hf:{hf_dir(case.spec[3:], hf_root)}" if case.is_hf else case.spec
