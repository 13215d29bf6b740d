"""Cohere (Command R, Aya Expanse): gated MLP in parallel with attention.

Native paths: ``model.layers[l].mlp.down_proj``; the layer computes
``h = h + attn(norm(h)) + mlp(norm(h))``, so the residual "before the MLP" is
``h + attn(norm(h))``, which the base class recovers as ``output - mlp``.
"""

from transfer_neurons.model.adapters.base import FamilyAdapter


class CohereAdapter(FamilyAdapter):
    family = "cohere"

    def parallel_residual(self) -> bool:
        return True
