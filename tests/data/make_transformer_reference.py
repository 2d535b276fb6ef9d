"""Writes transformer_reference.npz: PyTorch 2.13 autograd on F.scaled_dot_product_attention,
nn.MultiheadAttention and the Transformer layers (every mask kind, batch_first both ways, kdim/vdim, pre- and
post-norm, relu and gelu, 2-layer encoder and decoder stacks, a small nn.Transformer), so
tests/test_transformer.py checks fastnn against PyTorch without importing torch.

Run from the repository root: python tests/data/make_transformer_reference.py

Computed in float64 with dropout 0. Weights, inputs and upstream gradients are drawn in float32 and widened
(exact in both precisions) and stored as float32; results are float64.

Keys, per case:
  <case>/config            JSON: {"kind", "kwargs" (constructor), "inputs": [names of the positional float
                           inputs], "masks": {forward keyword: name}, "call": {other forward keywords},
                           "outputs": number of outputs compared (MultiheadAttention: 2 with weights)}
  <case>/param/<name>      the state_dict (PyTorch names)
  <case>/input/<name>      inputs and masks (bool masks as bool)
  <case>/out/<k>           forward outputs
  <case>/grad_out          upstream gradient of output 0
  <case>/grad_in/<name>    gradients of the float inputs
  <case>/grad/<name>       parameter gradients
  <case>/grad_mask/<kw>    for the cases whose float masks require grad ("mask_grad" in config): their gradients
"""
import json
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(0)
RNG = np.random.default_rng(0)


def f32(shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def causal_float(L):
    return np.triu(np.full((L, L), -np.inf, np.float32), 1)


def padding(N, S, lengths):
    m = np.zeros((N, S), bool)
    for i, n in enumerate(lengths):
        m[i, n:] = True
    return m


CASES = {}


def case(name, kind, kwargs, inputs, masks=None, call=None, outputs=1, mask_grad=()):
    CASES[name] = dict(kind=kind, kwargs=kwargs, inputs=inputs, masks=masks or {}, call=call or {}, outputs=outputs,
                       mask_grad=list(mask_grad))


q, k, v = f32((2, 3, 7, 8)), f32((2, 3, 9, 8)), f32((2, 3, 9, 5))
case("sdpa_plain", "sdpa", {}, {"q": q, "k": k, "v": v})
case("sdpa_bool", "sdpa", {}, {"q": q, "k": k, "v": v}, {"attn_mask": RNG.random((7, 9)) > 0.3})
case("sdpa_float", "sdpa", {}, {"q": q, "k": k, "v": v}, {"attn_mask": f32((2, 1, 7, 9))})
case("sdpa_causal_scale", "sdpa", {}, {"q": q, "k": k, "v": v}, call={"is_causal": True, "scale": 0.3})

x = f32((3, 5, 8))
case("mha_self_bf_masks", "MultiheadAttention", dict(embed_dim=8, num_heads=2, batch_first=True),
     {"query": x}, {"key_padding_mask": padding(3, 5, [5, 3, 4]), "attn_mask": RNG.random((5, 5)) > 0.8},
     call={"need_weights": True}, outputs=2)
case("mha_self_causal_float", "MultiheadAttention", dict(embed_dim=8, num_heads=4),
     {"query": f32((6, 2, 8))}, {"attn_mask": causal_float(6)}, call={"need_weights": True,
                                                                      "average_attn_weights": False}, outputs=2)
case("mha_cross_kdim_vdim", "MultiheadAttention", dict(embed_dim=8, num_heads=2, kdim=6, vdim=4),
     {"query": f32((4, 3, 8)), "key": f32((7, 3, 6)), "value": f32((7, 3, 4))},
     {"attn_mask": f32((6, 4, 7)), "key_padding_mask": padding(3, 7, [7, 2, 5])}, call={"need_weights": True},
     outputs=2)
case("mha_cross_same_dim_bf", "MultiheadAttention", dict(embed_dim=8, num_heads=2, batch_first=True, bias=False),
     {"query": f32((2, 4, 8)), "key": f32((2, 6, 8)), "value": f32((2, 6, 8))},
     {"key_padding_mask": padding(2, 6, [6, 4])}, call={"need_weights": False}, outputs=1)

layer = dict(d_model=8, nhead=2, dim_feedforward=16, dropout=0.0)
case("enc_post_relu", "TransformerEncoder", dict(layer=dict(layer, activation="relu"), num_layers=2),
     {"src": f32((6, 3, 8))}, {"mask": causal_float(6), "src_key_padding_mask": padding(3, 6, [6, 5, 4])})
case("enc_pre_gelu_bf_norm", "TransformerEncoder",
     dict(layer=dict(layer, activation="gelu", batch_first=True, norm_first=True), num_layers=2, norm=True),
     {"src": f32((3, 6, 8))}, {"src_key_padding_mask": padding(3, 6, [6, 2, 4])})
case("enc_layer_causal_hint", "TransformerEncoderLayer", dict(layer, batch_first=True),
     {"src": f32((2, 5, 8))}, {"src_mask": causal_float(5)}, call={"is_causal": True})
case("dec_post_relu", "TransformerDecoder", dict(layer=dict(layer), num_layers=2),
     {"tgt": f32((5, 3, 8)), "memory": f32((6, 3, 8))},
     {"tgt_mask": causal_float(5), "memory_key_padding_mask": padding(3, 6, [6, 4, 3]),
      "tgt_key_padding_mask": padding(3, 5, [5, 5, 4])})
case("dec_pre_gelu_bf", "TransformerDecoder",
     dict(layer=dict(layer, activation="gelu", batch_first=True, norm_first=True), num_layers=2, norm=True),
     {"tgt": f32((3, 5, 8)), "memory": f32((3, 6, 8))},
     {"tgt_mask": causal_float(5), "memory_mask": RNG.random((5, 6)) > 0.7})
case("transformer", "Transformer", dict(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=2,
                                        dim_feedforward=16, dropout=0.0, batch_first=True),
     {"src": f32((2, 6, 8)), "tgt": f32((2, 4, 8))}, {"tgt_mask": causal_float(4),
                                                     "src_key_padding_mask": padding(2, 6, [6, 3])})

# float masks that require grad (a learned bias on the scores): their gradients too
case("sdpa_float_mask_grad", "sdpa", {}, {"q": q, "k": k, "v": v}, {"attn_mask": f32((2, 1, 7, 9))},
     mask_grad=["attn_mask"])
case("mha_float_masks_grad", "MultiheadAttention", dict(embed_dim=8, num_heads=2, batch_first=True),
     {"query": f32((3, 5, 8))}, {"attn_mask": f32((5, 5)), "key_padding_mask": f32((3, 5))},
     call={"need_weights": False}, mask_grad=["attn_mask", "key_padding_mask"])
case("mha_head_mask_grad", "MultiheadAttention", dict(embed_dim=8, num_heads=2),
     {"query": f32((4, 3, 8)), "key": f32((6, 3, 8)), "value": f32((6, 3, 8))}, {"attn_mask": f32((6, 4, 6))},
     call={"need_weights": False}, mask_grad=["attn_mask"])


def build(kind, kwargs):
    if kind == "sdpa":
        return None
    if kind in ("TransformerEncoder", "TransformerDecoder"):
        layer_cls = nn.TransformerEncoderLayer if kind == "TransformerEncoder" else nn.TransformerDecoderLayer
        norm = nn.LayerNorm(kwargs["layer"]["d_model"]) if kwargs.get("norm") else None
        kw = {"enable_nested_tensor": False} if kind == "TransformerEncoder" else {}
        return getattr(nn, kind)(layer_cls(**kwargs["layer"]), kwargs["num_layers"], norm=norm, **kw)
    return getattr(nn, kind)(**kwargs)


def randomize(model):
    """Every parameter drawn anew (biases and LayerNorm affine too), float32-exact."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.from_numpy(f32(tuple(p.shape), 0.5 if p.ndim > 1 else 0.2)))
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name.endswith("norm3.weight") \
                    or name.endswith("norm.weight"):
                p.add_(1.0)


def main():
    out = {}
    for name, c in CASES.items():
        model = build(c["kind"], c["kwargs"])
        tensors = {n: torch.tensor(a, dtype=torch.float64, requires_grad=True) for n, a in c["inputs"].items()}
        masks = {kw: torch.from_numpy(np.asarray(m)).to(torch.float64 if np.asarray(m).dtype != bool else torch.bool)
                 for kw, m in c["masks"].items()}
        for kw in c["mask_grad"]:
            masks[kw].requires_grad_(True)
        if model is None:
            # fastnn's convention for bool masks here is PyTorch's for SDPA (True = may attend)
            res = (F.scaled_dot_product_attention(*tensors.values(), **masks, **c["call"]),)
        else:
            randomize(model)
            model.double().train()
            args = list(tensors.values())
            if c["kind"] == "MultiheadAttention" and len(args) == 1:
                args = [args[0]] * 3
            res = model(*args, **masks, **c["call"])
            res = res if isinstance(res, tuple) else (res,)
            for pname, p in model.state_dict().items():
                out[f"{name}/param/{pname}"] = p.numpy().astype(np.float32)
        g = f32(tuple(res[0].shape))
        res[0].backward(torch.from_numpy(g).double())
        out[f"{name}/grad_out"] = g
        for k in range(c["outputs"]):
            out[f"{name}/out/{k}"] = res[k].detach().numpy()
        for n, t in tensors.items():
            out[f"{name}/input/{n}"] = c["inputs"][n]
            out[f"{name}/grad_in/{n}"] = t.grad.numpy()
        for kw, m in c["masks"].items():
            out[f"{name}/input/{kw}"] = np.asarray(m)
        for kw in c["mask_grad"]:
            out[f"{name}/grad_mask/{kw}"] = masks[kw].grad.numpy()
        if model is not None:
            for pname, p in model.named_parameters():
                out[f"{name}/grad/{pname}"] = p.grad.numpy()
        config = {k: c[k] for k in ("kind", "kwargs", "call", "outputs", "mask_grad")}
        config["inputs"], config["masks"] = list(c["inputs"]), list(c["masks"])
        out[f"{name}/config"] = np.array(json.dumps(config))
    np.savez_compressed(os.path.join(HERE, "transformer_reference.npz"), **out)
    print(f"wrote {len(CASES)} cases, {len(out)} arrays")


if __name__ == "__main__":
    main()
