"""Layers, activations, losses, containers and graphs. Arrays in and out are numpy.ndarray (float32 by default)."""
from .module import Module, Parameter, install_graph_runtime
from .traced import GraphRuntime
from .summary import summarize
from .sequential import Sequential
from .linear import Linear, Identity, Flatten, Unflatten
from .dropout import Dropout, Dropout2d
from .shape import Reshape
from .center_loss import CenterLoss
# Each file lists its public names in __all__.
from .activations import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .recurrent import *  # noqa: F401,F403
from .embedding import *  # noqa: F401,F403
from .containers import *  # noqa: F401,F403
from .attention import AdditiveAttention
from .transformer import *  # noqa: F401,F403
from .seq2seq import Seq2Seq
from .interaction import Interaction
from .graph import Graph, Input
from .tracing import TraceError
from . import functional
from . import activations as _activations, losses as _losses, conv as _conv, pooling as _pooling
from . import normalization as _normalization, recurrent as _recurrent, embedding as _embedding
from . import containers as _containers, transformer as _transformer

install_graph_runtime(GraphRuntime(summarize))  # Module's entry into traced graphs and summaries
del install_graph_runtime, GraphRuntime, summarize

__all__ = ["Module", "Parameter", "Sequential", "Linear", "Identity", "Flatten", "Unflatten", "Dropout", "CenterLoss",
           "Dropout2d", "Reshape", "Graph", "Input", "TraceError", "functional",
           *_activations.__all__, *_losses.__all__, *_conv.__all__, *_pooling.__all__, *_normalization.__all__,
           *_recurrent.__all__, *_embedding.__all__, *_containers.__all__, "AdditiveAttention", "Seq2Seq",
           "Interaction", *_transformer.__all__]
