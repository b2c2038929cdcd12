"""The amortized model: sliced features, a linear head and optional heads, as an OTT Sinkhorn initializer."""

from ottsliced.initializers.heads import HEADS, MLPHead, PairHead
from ottsliced.initializers.sliced_initializer import FORMAT_VERSION, SlicedInitializer

__all__ = ["FORMAT_VERSION", "HEADS", "MLPHead", "PairHead", "SlicedInitializer"]
