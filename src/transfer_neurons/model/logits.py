"""Logits from the residual stream, as the model computes its own from the last layer's state.

The model's logits are ``final_norm`` (the adapter's), the ``unembedding`` (a linear map onto the
vocabulary), then what some families do after it: Cohere multiplies by ``config.logit_scale``, Gemma 2
soft-caps at ``config.final_logit_softcapping`` (``cap * tanh(logits / cap)``; Gemma 3 has the key,
with no cap by default). Read off the config, so that every family that sets either key gets it.

* ``unembedded``: final norm and unembedding only (what a write vector's lens reads; neither step
  after it changes the tokens' order);
* ``output_logits``: the family's steps after the unembedding;
* ``residual_logits``: both, the logit lens of a residual state: at the last layer's raw output
  they are the model's own logits.

May import: ``model.adapters``, torch.
"""

from __future__ import annotations

import torch

from transfer_neurons.model.adapters import FamilyAdapter


def unembedded(adapter: FamilyAdapter, residual: torch.Tensor) -> torch.Tensor:
    """[..., d_model] residual states -> [..., vocab] logits of the final norm and unembedding, in the
    unembedding's dtype and on its device (before any logit scale or soft-capping)."""
    unembedding = adapter.unembedding()
    weight = unembedding.weight
    with torch.no_grad():
        return unembedding(adapter.final_norm()(residual.to(weight.device, weight.dtype)))


def output_logits(adapter: FamilyAdapter, logits: torch.Tensor) -> torch.Tensor:
    """The family's steps after the unembedding: [..., vocab] -> [..., vocab], same dtype."""
    scale = getattr(adapter.config, "logit_scale", None)
    if scale is not None:
        logits = logits * scale
    cap = getattr(adapter.config, "final_logit_softcapping", None)
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return logits


def residual_logits(adapter: FamilyAdapter, residual: torch.Tensor) -> torch.Tensor:
    """[..., d_model] residual states (raw: before the final norm) -> [..., vocab] float32 logits, as the
    model would output them if each state were its last layer's."""
    return output_logits(adapter, unembedded(adapter, residual)).float()
