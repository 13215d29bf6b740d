"""Llama, Mistral and Qwen2: gated MLP, sequential residual, no norm after the MLP.

Native paths: ``model.layers[l].mlp.{gate_proj, up_proj, down_proj}``; the decoder layer
computes ``h = h + attn(norm(h)); h = h + mlp(norm(h))``.
"""

from transfer_neurons.model.adapters.base import FamilyAdapter


class LlamaAdapter(FamilyAdapter):
    family = "llama"
