"""A causal character Transformer on the standard library's docstrings
=====================================================================

A small causal character model (decoder-only Transformer) trained on the docstrings of Python's standard
library — text present on every machine, no download — printing the loss per epoch and a sampled continuation.

    ids (N, T) -> Embedding(vocab, 96) + a learned positional Parameter (T, 96)
    -> 2 x TransformerEncoderLayer(96, 4, 256, gelu, norm_first) with a causal mask -> LayerNorm -> Linear(96, vocab)

    python examples/char_transformer.py [--epochs 4] [--chars 200000]
"""
import argparse
import inspect
import json
import collections
import functools
import itertools
import os
import pathlib
import re
import string
import textwrap
import time

import numpy as np

import fastnn as fnn
from fastnn import nn


def corpus(max_chars):
    """The docstrings of a few standard-library modules and their members, as one text."""
    parts = []
    for module in (collections, functools, itertools, json, os, pathlib, re, string, textwrap, inspect):
        parts.append(inspect.getdoc(module) or "")
        for _, member in inspect.getmembers(module):
            doc = inspect.getdoc(member) if callable(member) else None
            if doc:
                parts.append(doc)
    text = "\n\n".join(dict.fromkeys(parts))
    return text[:max_chars]


class CharModel(nn.Module):
    def __init__(self, vocab, context, d_model=96, nhead=4, dim_feedforward=256, num_layers=2):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(np.random.default_rng(0).normal(0, 0.02, (context, d_model)).astype(np.float32))
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout=0.1, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model))
        self.head = nn.Linear(d_model, vocab)

    def forward(self, ids):
        x = self.embed(ids) + self.pos
        return self.head(self.encoder(x, is_causal=True))   # (N, T, vocab); key j > query i masked


def sample(model, stoi, itos, prompt, context, length, rng, temperature=0.8):
    model.eval()
    ids = [stoi[c] for c in prompt if c in stoi]
    for _ in range(length):
        window = ids[-context:]
        x = np.array([window + [0] * (context - len(window))])
        logits = model(x)[0, len(window) - 1] / temperature
        p = np.exp(logits - logits.max())
        ids.append(int(rng.choice(len(p), p=p / p.sum())))
    model.train()
    return "".join(itos[i] for i in ids)


def main(epochs=4, max_chars=200_000, context=64, batch_size=32, seed=0):
    fnn.manual_seed(seed)
    text = corpus(max_chars)
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = np.array([stoi[c] for c in text], np.int64)
    print(f"{len(text):,} characters of standard-library docstrings, vocabulary {len(chars)}")
    n = (len(data) - 1) // context
    x = data[:n * context].reshape(n, context)
    y = data[1:n * context + 1].reshape(n, context)
    model = CharModel(len(chars), context)
    loss_fn = nn.CrossEntropyLoss()
    opt = fnn.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        start, total, batches = time.perf_counter(), 0.0, 0
        for idx in np.array_split(rng.permutation(n), max(1, n // batch_size)):
            logits = model(x[idx])
            total += loss_fn(logits.reshape(-1, len(chars)), y[idx].reshape(-1))
            model.backward(loss_fn.backward().reshape(logits.shape))
            opt.step()
            opt.zero_grad()
            batches += 1
        print(f"epoch {epoch + 1}: loss {total / batches:.3f} ({time.perf_counter() - start:.0f} s)")
    print(repr(sample(model, stoi, chars, "Return the ", context, 120, rng)))


if __name__ == "__main__":
    if os.environ.get("FASTNN_DOCS_QUICK") == "1":  # the documentation build: one short epoch
        main(1, 10_000)
    else:
        parser = argparse.ArgumentParser()
        parser.add_argument("--epochs", type=int, default=4)
        parser.add_argument("--chars", type=int, default=200_000)
        args = parser.parse_args()
        main(args.epochs, args.chars)
