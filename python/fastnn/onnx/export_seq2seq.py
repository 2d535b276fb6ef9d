"""Seq2Seq in ONNX ops, the teacher-forced decoder as an ONNX Scan over tgt_in's time axis, so the target
length is dynamic (as are the batch size and, with dynamic_axes, the source length):

    src -> Gather(src_embedding.weight) -> encoder (export_recurrent.py) -> keys (N, S, K), h_n
    s_0 = Tanh(Gemm([h_n forward; h_n backward], bridge.weight, bridge.bias)); c_0 = 0 (LSTM)
    mask = Not(Equal(src, src_pad_idx)) when src_pad_idx is set
    Scan over axis 1 of Gather(tgt_embedding.weight, tgt_in) (N, T, E), state s (and c), body per step:
        context = attention(s, keys) (export_attention.py; keys projected once, outside the loop);
        s, c = decoder cell step on [x_t; context] (export_cell.py: Gemm with decoder.weight_ih/bias_ih and
        decoder.weight_hh/bias_hh, PyTorch's GRU/LSTM gates); scan output [s; context] (N, H + K)
    logits = MatMul(features (N, T, H + K), out.weightᵀ) + out.bias

The body reads the keys, the mask and the initializers from the outer graph (ONNX subgraph scoping).
fastnn.onnx.load imports the Scan back as a loop over its body (import_scan.py), keeping the parameter names.
"""
import numpy as np

from .export_attention import attention_keys, attention_step
from .export_cell import cell_step
from .export_recurrent import recurrent
from .values import T


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
    c0 = b.op("Mul", [s, b.scalar(0.0, dtype)], prefix + "c0") if lstm else None
    # the Scan body: (s, [c], x_t) -> (s', [c'], [s'; context])
    outer, b.nodes = b.nodes, []
    s_in, x_in = b.fresh(prefix + "step_s"), b.fresh(prefix + "step_x")
    c_in = b.fresh(prefix + "step_c") if lstm else None
    ctx, _ = attention_step(b, m.attention, att, proj, keys, s_in, mask, dtype)
    inp = b.op("Concat", [x_in, ctx], prefix + "step_input", axis=1)
    s_out, c_out = cell_step(b, "LSTM" if lstm else "GRU", inp, s_in, c_in, w_ih, w_hh, b_ih, b_hh, H,
                             prefix + "step_")
    feat = b.op("Concat", [s_out, ctx], prefix + "step_feature", axis=1)
    body_nodes, b.nodes = b.nodes, outer
    elem = b.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    K, E = m.encoder.hidden_size * (2 if m.encoder.bidirectional else 1), m.tgt_embedding.embedding_dim

    def vi(name, width):
        return b.helper.make_tensor_value_info(name, elem, [None, width])
    states_in = [vi(s_in, H)] + ([vi(c_in, H)] if lstm else [])
    states_out = [vi(s_out, H)] + ([vi(c_out, H)] if lstm else [])
    graph = b.helper.make_graph(body_nodes, "seq2seq_decoder_step", states_in + [vi(x_in, E)],
                                states_out + [vi(feat, H + K)])
    n_state = 2 if lstm else 1
    outs = b.op("Scan", [s] + ([c0] if lstm else []) + [temb], prefix + "decoder_scan", outputs=n_state + 1,
                body=graph, num_scan_inputs=1, scan_input_axes=[1], scan_output_axes=[1])
    feats = outs[-1]
    wt = b.op("Transpose", [b.param(m.out, prefix + "out.", "weight")], prefix + "out_wT", perm=[1, 0])
    return b.op("Add", [b.op("MatMul", [feats, wt], prefix + "out_matmul"), b.param(m.out, prefix + "out.", "bias")],
                prefix + "logits")
