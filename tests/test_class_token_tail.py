"""The class-token tail (vit_edge/convert/stages/class_token_tail.py): a classifier whose head reads only the
class token gets a last block that computes only that token. Exact, so it is checked against the model itself
on random weights; the trained fixture's IR is checked in tests/test_openvino_routes.py."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from vit_edge.convert.stages.class_token_tail import tail_module  # noqa: E402


def _timm(**kwargs):
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=3,
                             num_classes=7, **kwargs).eval()


def _same(model, tail, size=(32, 32), batch=5):
    x = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return float((tail(x) - model(x)).abs().max())


def test_a_timm_token_pooled_vit_gets_a_tail_with_the_same_logits_and_the_same_weights():
    model = _timm()
    tail, why_not = tail_module(model, 3, (32, 32))
    assert why_not is None
    assert _same(model, tail) < 1e-5
    # Its own weights under its own names: op names, the budget's module names and the manifest stay the model's.
    assert dict(tail.named_parameters()).keys() == dict(model.named_parameters()).keys()
    assert all(a is b for a, b in zip(tail.parameters(), model.parameters()))


def test_the_tail_computes_only_the_class_token_after_the_last_keys_and_values():
    model = _timm()
    tail, _ = tail_module(model, 3, (32, 32))
    rows = {}
    hooks = [module.register_forward_hook(lambda m, i, o, name=name: rows.__setitem__(name, i[0].shape[1]))
             for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    with torch.no_grad():
        tail(torch.randn(2, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    tokens = 1 + (32 // 8) ** 2
    assert rows["blocks.1.mlp.fc2"] == tokens and rows["blocks.2.attn.qkv"] == tokens  # keys and values: all
    assert rows["blocks.2.attn.proj"] == rows["blocks.2.mlp.fc1"] == rows["blocks.2.mlp.fc2"] == 1


@pytest.mark.parametrize("kwargs, reason", [({"global_pool": "avg"}, "reads only the class token"),
                                            ({"class_token": False, "global_pool": "avg"}, "class token")])
def test_a_model_whose_head_reads_every_token_is_left_whole(kwargs, reason):
    tail, why_not = tail_module(_timm(**kwargs), 3, (32, 32))
    assert tail is None and reason in why_not


def test_a_tail_that_would_change_the_logits_is_refused(monkeypatch):
    """The guard for a layout that looks known but computes something else (a timm or transformers change)."""
    from vit_edge.convert.stages import class_token_tail

    real = class_token_tail._timm_last_block
    monkeypatch.setattr(class_token_tail, "_timm_last_block", lambda block, x: real(block, x) + torch.linspace(0, 1, x.shape[-1]))
    tail, why_not = tail_module(_timm(), 3, (32, 32))
    assert tail is None and "differs from the model" in why_not


def test_a_hugging_face_vit_classifier_gets_a_tail_and_other_tasks_do_not():
    transformers = pytest.importorskip("transformers")
    from vit_edge.sources.hf_model import HFImageModel

    config = transformers.ViTConfig(image_size=32, patch_size=8, num_hidden_layers=3, hidden_size=48,
                                    num_attention_heads=3, intermediate_size=96, num_labels=5)
    torch.manual_seed(0)
    inner = transformers.ViTForImageClassification(config).eval()
    model = HFImageModel(inner, task="classify", classifier=True, interpolate=False).eval()
    tail, why_not = tail_module(model, 3, (32, 32))
    assert why_not is None and _same(model, tail) < 1e-5
    assert dict(tail.named_parameters()).keys() == dict(model.named_parameters()).keys()
    features = HFImageModel(inner, task="features", classifier=True, interpolate=False).eval()
    assert tail_module(features, 3, (32, 32))[0] is None


def test_a_tail_that_cannot_run_the_model_leaves_it_whole(monkeypatch):
    from vit_edge.convert.stages import class_token_tail

    def broken(block, x):
        raise RuntimeError("shape '[2, 1, 3]' is invalid")

    monkeypatch.setattr(class_token_tail, "_timm_last_block", broken)
    tail, why_not = tail_module(_timm(), 3, (32, 32))
    assert tail is None and "cannot run this model" in why_not and "RuntimeError" in why_not
