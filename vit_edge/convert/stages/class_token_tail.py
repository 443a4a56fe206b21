"""Stage ``class_token_tail``: a classifier that reads only the class token computes only that token in its last block.

Why: a ViT classifier's head reads one token, the class token, of the last block's output. Every token's
keys and values in the last block are needed (the class token attends to them all), but its query, attention
output, projection, MLP and the final LayerNorm are per token: only the class token's are used. Computing just
that one is exact (the same function; float rounding may differ in the last bits) and skips most of a block:
on a 6-block ViT about 14% of the GEMM work, on a 12-block ViT-S/16 about 7%. Neither optimum-intel nor
OpenVINO's own conversion does this: the graph they export computes all tokens to the end.

How: :func:`tail_module` returns a module that runs the model's own submodules (registered under their own
names, so op names and weights stay those of the model) and replaces only the last block by a class-token
version, for the families whose structure is known: timm ``VisionTransformer`` with ``global_pool="token"``
and Hugging Face ``ViTForImageClassification`` (transformers 5 layout). Anything else, or a tail that does not
reproduce the model's logits on a probe batch, is left whole; the caller's FP32 parity check against the
original module then checks the converted graph as always.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Imported only by the PyTorch frontend stage (which has torch loaded already): its classes subclass nn.Module.

PROBE_TOLERANCE = 1e-4  # max abs logit difference, relative to the logits' scale, on the probe batch


def tail_module(module, channels: int, size: tuple[int, int]):
    """``(module computing only the class token in its last block, None)``, or ``(None, why not)``."""
    try:
        tail = _build(module)
    except AttributeError as exc:  # a layout this code does not know: leave the model whole
        return None, f"unrecognised layout ({exc})"
    if tail is None:
        return None, "not a classifier whose head reads only the class token"
    probe = torch.randn(2, channels, *size, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            want, got = module(probe), tail(probe)
    except Exception as exc:  # a variant the tail cannot run (an option this code does not read): leave it whole
        return None, f"the tail cannot run this model ({type(exc).__name__}: {str(exc)[:120]})"
    if got.shape != want.shape:
        return None, f"the tail gives shape {tuple(got.shape)}, the model {tuple(want.shape)}"
    error = float((got - want).abs().max())
    if not error <= PROBE_TOLERANCE * max(1.0, float(want.abs().max())):
        return None, f"the tail differs from the model by {error:.3g} on a probe batch"
    return tail, None


def _build(module):
    kind = type(module).__name__
    if kind == "VisionTransformer" and type(module).__module__.startswith("timm."):
        return _TimmTail(module) if _timm_reads_class_token(module) else None
    inner = getattr(module, "inner", None)
    if (kind == "HFImageModel" and module.task == "classify"
            and type(inner).__name__ == "ViTForImageClassification" and not module.extra):
        inner.vit.layers[-1].attention.q_proj  # noqa: B018  (the transformers 5 layout; AttributeError otherwise)
        return _HFViTTail(module)
    return None


def _timm_reads_class_token(model) -> bool:
    return (model.global_pool == "token" and getattr(model, "attn_pool", None) is None
            and model.cls_token is not None and all(type(b).__name__ == "Block" and type(b.attn).__name__ ==
                                                    "Attention" for b in model.blocks))


def _adopt(wrapper, model) -> None:
    """Register ``model``'s children, parameters and buffers on ``wrapper`` under their own names (op names,
    weight names and the budget's module names stay the model's)."""
    for name, child in model.named_children():
        wrapper.add_module(name, child)
    for name, parameter in model.named_parameters(recurse=False):
        wrapper.register_parameter(name, parameter)
    for name, buffer in model.named_buffers(recurse=False):
        wrapper.register_buffer(name, buffer)
    object.__setattr__(wrapper, "model", model)  # not a submodule: its children are this one's


class _TimmTail(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        _adopt(self, model)

    def forward(self, x):
        model = self.model
        x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
        for block in model.blocks[:-1]:
            x = block(x)
        x = _timm_last_block(model.blocks[-1], x)
        return model.forward_head(model.norm(x))


def _timm_last_block(block, x):
    attn = block.attn
    batch, tokens, _ = x.shape
    h = block.norm1(x)
    qkv = attn.qkv(h).reshape(batch, tokens, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    # The class token's query only: [batch, heads, 1, dim] against every key and value.
    out = F.scaled_dot_product_attention(attn.q_norm(q[:, :, :1]), attn.k_norm(k), v, scale=attn.scale)
    out = getattr(attn, "norm", _identity)(out.transpose(1, 2).reshape(batch, 1, -1))
    if getattr(attn, "gate", None) is not None:  # gated attention: the class token's gate
        out = out * attn.gate(h[:, :1]).sigmoid()
    out = attn.proj_drop(attn.proj(out))
    x = x[:, :1] + block.drop_path1(block.ls1(out))
    return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))


class _HFViTTail(torch.nn.Module):
    def __init__(self, wrapper):
        super().__init__()
        _adopt(self, wrapper)

    def forward(self, pixel_values):
        vit = self.model.inner.vit
        x = vit.embeddings(pixel_values)
        for layer in vit.layers[:-1]:
            x = layer(x)
        x = _hf_last_layer(vit.layers[-1], x)
        return self.model.inner.classifier(vit.layernorm(x)[:, 0])


def _hf_last_layer(layer, x):
    attention = layer.attention
    batch, tokens, _ = x.shape
    h = layer.layernorm_before(x)

    def heads(t, n):
        return t.view(batch, n, -1, attention.head_dim).transpose(1, 2)

    q = heads(attention.q_proj(h[:, :1]), 1)  # the class token's query only
    out = F.scaled_dot_product_attention(q, heads(attention.k_proj(h), tokens), heads(attention.v_proj(h), tokens),
                                         scale=attention.scaling)
    out = attention.o_proj(out.transpose(1, 2).reshape(batch, 1, -1))
    x = x[:, :1] + layer.dropout(out)
    return x + layer.dropout(layer.mlp(layer.layernorm_after(x)))


def _identity(x):
    return x
