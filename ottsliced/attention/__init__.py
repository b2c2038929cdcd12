"""Doubly-stochastic attention, amortized by sliced potentials.

* :mod:`ottsliced.attention.weights`: the attention matrices (``softmax``,
  ``sinkhorn``, ``sliced``), pure functions of the logits.
* :mod:`ottsliced.attention.layer`: :class:`DoublyStochasticAttention`, a flax
  module with the arguments of ``flax.linen.MultiHeadDotProductAttention``.
"""

from ottsliced.attention.layer import DoublyStochasticAttention, init_directions
from ottsliced.attention.weights import (
  MODES,
  attention_logits,
  column_marginal_error,
  potential_from_features,
  predicted_potential,
  semi_dual,
  sinkhorn_potential,
  sinkhorn_weights,
  sliced_features,
  sliced_weights,
  softmax_weights,
  token_weights,
  transported_attention,
  transported_weights,
)

__all__ = [
  "MODES",
  "DoublyStochasticAttention",
  "attention_logits",
  "column_marginal_error",
  "init_directions",
  "potential_from_features",
  "predicted_potential",
  "semi_dual",
  "sinkhorn_potential",
  "sinkhorn_weights",
  "sliced_features",
  "sliced_weights",
  "softmax_weights",
  "token_weights",
  "transported_attention",
  "transported_weights",
]
