"""BLOOM: non-gated GeLU MLP with biases, sequential residual.

Native paths: ``transformer.h[l].mlp.{dense_h_to_4h, dense_4h_to_h}``; the final norm is
``transformer.ln_f``. ``BloomMLP`` adds the residual itself, so the MLP's contribution is the
output of ``dense_4h_to_h`` (including its bias), not the output of ``mlp``.
"""

from typing import Any

from torch import nn

from transfer_neurons.model.adapters.base import FamilyAdapter


class BloomAdapter(FamilyAdapter):
    family = "bloom"
    gated_mlp = False

    def layers(self) -> Any:
        return self.model.transformer.h

    def down_projection(self, layer_index: int) -> nn.Linear:
        return self.layers()[layer_index].mlp.dense_4h_to_h

    def contribution_module(self, layer_index: int) -> nn.Module:
        return self.down_projection(layer_index)

    def activation_function(self, layer_index: int) -> nn.Module:
        return self.layers()[layer_index].mlp.gelu_impl

    def named_input_projections(self, layer_index: int) -> dict[str, nn.Linear]:
        return {"in": self.layers()[layer_index].mlp.dense_h_to_4h}

    def final_norm(self) -> nn.Module:
        return self.model.transformer.ln_f
