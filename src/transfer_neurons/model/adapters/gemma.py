"""Gemma 2 and Gemma 3: gated MLP wrapped in pre- and post-feedforward RMSNorms.

Native paths: ``model.layers[l].mlp.down_proj`` and ``post_feedforward_layernorm``; the
layer adds ``norm(m) = m / rms(m) * (1 + g)`` where ``m`` is the MLP output. Writing
``m = sum_i a_i w_i`` gives the exact per-neuron decomposition
``norm(m) = sum_i (1 / rms(m)) * a_i * ((1 + g) * w_i)``: the write vector of neuron i is
``(1 + g) * w_i`` and ``1 / rms(m)`` is a per-token write scale.
"""

from typing import Any

import torch

from transfer_neurons.model.adapters.base import FamilyAdapter


class GemmaAdapter(FamilyAdapter):
    family = "gemma"
    norm_after_mlp = True

    def contribution_module(self, layer_index: int) -> Any:  # the family's RMSNorm: ``weight``, ``eps``
        return self.layers()[layer_index].post_feedforward_layernorm

    def write_vectors(self, layer_index: int) -> torch.Tensor:
        norm = self.contribution_module(layer_index)
        gain = 1.0 + norm.weight.detach().float()
        return super().write_vectors(layer_index) * gain[None, :]

    def write_scale(self, layer_index: int, contribution_input: torch.Tensor) -> torch.Tensor:
        norm = self.contribution_module(layer_index)
        mlp_output = contribution_input.float()
        return torch.rsqrt(mlp_output.pow(2).mean(-1) + norm.eps)
