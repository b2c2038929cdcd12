"""Baselines the amortized model is compared with; nothing in the core imports them.

- :mod:`~ottsliced.baselines.meta_ot`: Meta OT (Amos et al., ICML 2023), an MLP
  from :math:`[a; b]` to :math:`f` on a fixed geometry, trained with OTT's
  ``MetaInitializer`` and exposed as a jit-friendly pytree initializer;
- :mod:`~ottsliced.baselines.min_swgg`: min-SWGG plans (Mahey et al., NeurIPS
  2023), the best lifted 1-D monotone plan over random directions;
- :mod:`~ottsliced.baselines.sorting`: whether OTT's ``SortingInitializer``
  applies.
"""

from ottsliced.baselines.meta_ot import MetaMLP, MetaOTInitializer, MetaOTModel, fit_meta_ot, fit_meta_ot_pool
from ottsliced.baselines.min_swgg import SWGGResult, min_swgg_plan, min_swgg_plans
from ottsliced.baselines.sorting import sorting_applicable

__all__ = [
  "MetaMLP",
  "MetaOTInitializer",
  "MetaOTModel",
  "SWGGResult",
  "fit_meta_ot",
  "fit_meta_ot_pool",
  "min_swgg_plan",
  "min_swgg_plans",
  "sorting_applicable",
]
