"""Seq2Seq in ONNX ops, the decoder unrolled over the target length of the export's example input (tgt_in's
length is fixed in the file; the batch size and, with dynamic_axes, the source length stay free):

    src -> Gather(src_embedding.weight) -> encoder (export_recurrent.py) -> keys (N, S, K), h_n
    s_0 = Tanh(Gemm([h_n forward; h_n backward], bridge.weight, bridge.bias))
    mask = Not(Equal(src, src_pad_idx)) when src_pad_idx is set
    per step t: x_t = Gather(tgt_embedding(tgt_in), t, axis=1); context = attention (export_attention.py);
        gi = Gemm([x_t; context], decoder.weight_ih, decoder.bias_ih), gh = Gemm(s, decoder.weight_hh, ...);
        GRU: r, z = Sigmoid of the gate sums, n = Tanh(gi_n + r·gh_n), s = n + z·(s − n);
        LSTM: i, f, o = Sigmoid, g = Tanh of the gate sums, c = f·c + i·g, s = o·Tanh(c);
        feature_t = [s; context]
    logits = MatMul(features (N, T, H + K), out.weightᵀ) + out.bias
"""
import numpy as np

from .export_attention import attention_keys, attention_step
from .export_recurrent import recurrent
from .values import T


def _gate(b, g, k, H, hint):
    return b.op("Slice", [g, b.ints([k * H]), b.ints([(k + 1) * H]), b.ints([1])], hint)


def seq2seq(b, m, prefix, args, out):
    src, tgt = args[0], args[1]
    dtype, H, lstm = out.dtype, m.hidden_dim, m.cell == "lstm"
    emb_value = m.src_embedding(src.value)
    emb = b.op("Gather", [b.param(m.src_embedding, prefix + "src_embedding.", "weight"), src.name],
               prefix + "src_emb", axis=0)
    keys, state = recurrent(b, m.encoder, prefix + "encoder.", [T(emb, emb_value)], m.encoder(emb_value))
    h_n = state[0] if lstm else state
    flat = b.op("Reshape", [b.op("Transpose", [h_n], prefix + "h_n_T", perm=[1, 0, 2]), b.ints([0, -1])],
                prefix + "h_n_flat")
    s = b.op("Tanh", [b.op("Gemm", [flat, b.param(m.bridge, prefix + "bridge.", "weight"),
                                    b.param(m.bridge, prefix + "bridge.", "bias")], prefix + "bridge", transB=1)],
             prefix + "s0")
    mask = None
    if m.src_pad_idx is not None:
        pad = b.const(np.asarray(m.src_pad_idx, src.value.dtype), prefix + "pad")
        mask = b.op("Not", [b.op("Equal", [src.name, pad], prefix + "is_pad")], prefix + "mask")
    att = prefix + "attention."
    proj = attention_keys(b, m.attention, att, keys)
    temb = b.op("Gather", [b.param(m.tgt_embedding, prefix + "tgt_embedding.", "weight"), tgt.name],
                prefix + "tgt_emb", axis=0)
    dec = prefix + "decoder."
    w_ih, w_hh = b.param(m.decoder, dec, "weight_ih"), b.param(m.decoder, dec, "weight_hh")
    b_ih, b_hh = b.param(m.decoder, dec, "bias_ih"), b.param(m.decoder, dec, "bias_hh")
    c = b.op("Mul", [s, b.scalar(0.0, dtype)], prefix + "c0") if lstm else None
    features = []
    for t in range(tgt.value.shape[1]):
        step = f"{prefix}step{t}_"
        x_t = b.op("Gather", [temb, b.const(np.asarray(t, np.int64), "t")], step + "x", axis=1)
        ctx, _ = attention_step(b, m.attention, att, proj, keys, s, mask, dtype)
        inp = b.op("Concat", [x_t, ctx], step + "input", axis=1)
        gi = b.op("Gemm", [inp, w_ih, b_ih], step + "gi", transB=1)
        gh = b.op("Gemm", [s, w_hh, b_hh], step + "gh", transB=1)
        if lstm:
            g = b.op("Add", [gi, gh], step + "g")
            i, f, gg, o = (_gate(b, g, k, H, step + n) for k, n in enumerate("ifgo"))
            i, f, o = (b.op("Sigmoid", [v], step + "sig") for v in (i, f, o))
            c = b.op("Add", [b.op("Mul", [f, c], step + "fc"), b.op("Mul", [i, b.op("Tanh", [gg], step + "tg")],
                                                                       step + "ig")], step + "c")
            s = b.op("Mul", [o, b.op("Tanh", [c], step + "tc")], step + "s")
        else:
            r = b.op("Sigmoid", [b.op("Add", [_gate(b, gi, 0, H, step + "gi_r"), _gate(b, gh, 0, H, step + "gh_r")],
                                      step + "r_sum")], step + "r")
            z = b.op("Sigmoid", [b.op("Add", [_gate(b, gi, 1, H, step + "gi_z"), _gate(b, gh, 1, H, step + "gh_z")],
                                      step + "z_sum")], step + "z")
            n = b.op("Tanh", [b.op("Add", [_gate(b, gi, 2, H, step + "gi_n"),
                                           b.op("Mul", [r, _gate(b, gh, 2, H, step + "gh_n")], step + "rgh")],
                                   step + "n_sum")], step + "n")
            s = b.op("Add", [n, b.op("Mul", [z, b.op("Sub", [s, n], step + "s_n")], step + "zs")], step + "s")
        feat = b.op("Concat", [s, ctx], step + "feature", axis=1)
        features.append(b.op("Unsqueeze", [feat, b.ints([1])], step + "feature3"))
    feats = features[0] if len(features) == 1 else b.op("Concat", features, prefix + "features", axis=1)
    wt = b.op("Transpose", [b.param(m.out, prefix + "out.", "weight")], prefix + "out_wT", perm=[1, 0])
    return b.op("Add", [b.op("MatMul", [feats, wt], prefix + "out_matmul"), b.param(m.out, prefix + "out.", "bias")],
                prefix + "logits")
