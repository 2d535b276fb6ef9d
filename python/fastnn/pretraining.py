"""Greedy layer-wise unsupervised pretraining.

Each Linear layer of a stack is trained in turn as the encoder of a one-hidden-layer autoencoder: the
encoder is the layer followed by its activation, the decoder a fresh Linear back to the layer's input
size, and the loss the mean squared reconstruction error of the layer's input. The first layer
reconstructs the data; layer k reconstructs the codes (activations) of the already-trained layers
0..k-1. The decoders are thrown away; the trained encoders, stacked, initialise a network that is then
fine-tuned with labels:

    import fastnn as fnn
    pre = fnn.pretraining.pretrain_greedy([64, 128, 64], x_train, epochs=20, batch_size=32, seed=0)
    model = pre.model(head=fnn.nn.Linear(64, 10))     # Linear, Sigmoid, Linear, Sigmoid, Linear
    fnn.Trainer(model, fnn.nn.CrossEntropyLoss(), fnn.optim.Adam(model.parameters(), lr=1e-3)).fit(x, y)

Every stage runs through fastnn.Trainer, so shuffling draws from fastnn.random.generator() and
`seed=` (or fastnn.manual_seed before the call) makes the whole pretraining reproducible bit for bit.
"""
import numbers

import numpy as np

from . import nn, optim
from .random import manual_seed
from .trainer import Trainer

__all__ = ["pretrain_greedy", "PretrainResult"]


def _default_optimizer(params):
    return optim.Adam(params, lr=1e-3)


class PretrainResult:
    """What :func:`pretrain_greedy` returns: the pretrained stack and how each stage went.

    ``model(head=None)`` gives a Sequential ready for supervised fine-tuning (the pretrained layers with their
    activations, then ``head``), sharing — not copying — the pretrained weights; ``encode(x)`` runs the
    encoder.

    Parameters
    ----------
    layers : list of Linear
        The pretrained layers (the same objects as given, trained in place).
    activations : list of Module
        The activation after each layer.
    decoders : list of Linear
        The decoder of each stage (discarded for fine-tuning; kept for inspection).
    histories : list of dict
        One Trainer history per stage: ``"loss"`` (reconstruction MSE per epoch) and ``"initial_loss"`` (before
        training).

    Attributes
    ----------
    encoder : Sequential
        ``Sequential(layer0, act0, layer1, act1, ...)``, sharing the layers' parameters.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> x = np.random.default_rng(0).random((64, 8)).astype(np.float32)
    >>> result = fnn.pretraining.pretrain_greedy([8, 6, 4], x, epochs=2, seed=0)
    >>> net = result.model(fnn.nn.Linear(4, 3))
    >>> net(x).shape, len(result.histories)
    ((64, 3), 2)
    """

    def __init__(self, layers, activations, decoders, histories):
        self.layers = list(layers)
        self.activations = list(activations)
        self.decoders = list(decoders)
        self.histories = list(histories)
        mods = []
        for layer, act in zip(self.layers, self.activations):
            mods += [layer, act]
        self.encoder = nn.Sequential(*mods)

    def model(self, head=None):
        """A Sequential ready for supervised fine-tuning: the pretrained layers with their activations,
        then `head` (a Module, a list of Modules, or None for the encoder alone). The modules (and so the
        pretrained weights) are shared with this result, not copied."""
        mods = list(self.encoder)
        if head is not None:
            mods += list(head) if isinstance(head, (list, tuple)) else [head]
        return nn.Sequential(*mods)

    def encode(self, x, batch_size=256):
        """The top layer's codes for x (eval mode)."""
        return Trainer(self.encoder, nn.MSELoss(), _NoOptimizer(), metrics=[]).predict(x, batch_size=batch_size)

    def __repr__(self):
        sizes = [self.layers[0].in_features] + [layer.out_features for layer in self.layers] if self.layers else []
        return f"PretrainResult(sizes={sizes}, stages={len(self.layers)})"


class _NoOptimizer:
    lr = None

    def step(self):
        pass

    def zero_grad(self):
        pass


def _make_activation(activation, index):
    if activation is None:
        return nn.Identity()
    if isinstance(activation, nn.Module):
        if index > 0:
            raise ValueError("pretrain_greedy: pass activation as a class or factory (e.g. fastnn.nn.Sigmoid), "
                             "not a Module instance, so that every layer gets its own")
        return activation
    act = activation()
    if not isinstance(act, nn.Module):
        raise TypeError(f"pretrain_greedy: activation() must return a Module, got {type(act).__name__}")
    return act


def _build_layers(layers):
    if len(layers) == 0:
        raise ValueError("pretrain_greedy: layers is empty")
    if all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in layers):
        if len(layers) < 2:
            raise ValueError(f"pretrain_greedy: layer sizes need the input size and at least one hidden size, "
                             f"got {list(layers)}")
        if any(s < 1 for s in layers):
            raise ValueError(f"pretrain_greedy: layer sizes must be >= 1, got {list(layers)}")
        return [nn.Linear(int(a), int(b)) for a, b in zip(layers[:-1], layers[1:])]
    layers = list(layers)
    for i, layer in enumerate(layers):
        if not isinstance(layer, nn.Linear):
            raise TypeError(f"pretrain_greedy: layers must be fastnn.nn.Linear modules or a list of sizes; "
                            f"element {i} is {type(layer).__name__}")
        if i and layer.in_features != layers[i - 1].out_features:
            raise ValueError(f"pretrain_greedy: layer {i} {layer!r} takes {layer.in_features} inputs but layer "
                             f"{i - 1} gives {layers[i - 1].out_features}")
    return layers


def pretrain_greedy(layers, x, epochs=10, batch_size=32, optimizer_factory=None, activation=nn.Sigmoid,
                    decoder_activation=None, seed=None, verbose=0):
    """Greedy layer-wise autoencoder pretraining of a stack of Linear layers.

    Each layer in turn is trained as the encoder of a one-hidden-layer autoencoder that reconstructs its
    input (the previous layers' output), then kept; labels are not used. Fine-tune the result with
    ``result.model(head)``.

    Parameters
    ----------
    layers : list of Linear, or list of int
        Linear modules (trained in place), or sizes ``[n_in, h1, h2, ...]`` (the layers are built after
        seeding).
    x : ndarray, shape (N, n_in)
        Training inputs.
    epochs : int or list of int, default 10
        Epochs per stage, or one number per layer.
    batch_size : int, default 32
        Batch size of every stage.
    optimizer_factory : callable, optional
        ``parameters -> optimizer``, called once per stage; default ``Adam(lr=1e-3)``.
    activation : class or callable or None, default fastnn.nn.Sigmoid
        Builds the encoder activation (None: linear).
    decoder_activation : class or callable or None, default None
        Builds the decoder's output activation (None: linear).
    seed : int or None, default None
        ``fastnn.manual_seed(seed)`` first.
    verbose : int, default 0
        Passed to ``Trainer.fit``.

    Returns
    -------
    PretrainResult
        The pretrained stack.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> x = np.random.default_rng(0).random((64, 8)).astype(np.float32)
    >>> result = fnn.pretraining.pretrain_greedy([8, 4], x, epochs=5, seed=0)
    >>> h = result.histories[0]
    >>> h["loss"][-1] < h["initial_loss"][0]          # the reconstruction improved
    True
    """
    if seed is not None:
        manual_seed(seed)
    layers = _build_layers(layers)
    if optimizer_factory is None:
        optimizer_factory = _default_optimizer
    if not callable(optimizer_factory):
        raise TypeError(f"pretrain_greedy: optimizer_factory must be callable (parameters -> optimizer), got "
                        f"{type(optimizer_factory).__name__}")
    stage_epochs = list(epochs) if isinstance(epochs, (list, tuple)) else [epochs] * len(layers)
    if len(stage_epochs) != len(layers):
        raise ValueError(f"pretrain_greedy: {len(stage_epochs)} epoch counts for {len(layers)} layers")

    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != layers[0].in_features:
        raise ValueError(f"pretrain_greedy: x must have shape (N, {layers[0].in_features}) for the first layer "
                         f"{layers[0]!r}, got {x.shape}")
    dtype = layers[0].weight.data.dtype
    codes = np.ascontiguousarray(x, dtype=dtype)

    activations, decoders, histories = [], [], []
    for i, layer in enumerate(layers):
        act = _make_activation(activation, i)
        decoder = nn.Linear(layer.out_features, layer.in_features)
        if decoder.weight.data.dtype != dtype:
            decoder.to(dtype)
        mods = [layer, act, decoder]
        if decoder_activation is not None:
            mods.append(_make_activation(decoder_activation, 1))
        autoencoder = nn.Sequential(*mods)
        trainer = Trainer(autoencoder, nn.MSELoss(), optimizer_factory(autoencoder.parameters()), metrics=[])
        initial = trainer.evaluate(codes, codes)["loss"]
        history = trainer.fit(codes, codes, epochs=int(stage_epochs[i]), batch_size=batch_size, verbose=verbose)
        history["initial_loss"] = [initial]
        encoder = nn.Sequential(layer, act)
        codes = np.ascontiguousarray(
            Trainer(encoder, nn.MSELoss(), _NoOptimizer(), metrics=[]).predict(codes), dtype=dtype)
        activations.append(act)
        decoders.append(decoder)
        histories.append(history)
    return PretrainResult(layers, activations, decoders, histories)
