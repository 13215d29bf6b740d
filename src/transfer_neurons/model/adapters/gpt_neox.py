"""GPT-NeoX (Pythia): non-gated MLP with biases, parallel residual by default.

Native paths: ``gpt_neox.layers[l].mlp.{dense_h_to_4h, dense_4h_to_h}``; with
``use_parallel_residual`` the layer computes ``h + attn(ln1(h)) + mlp(ln2(h))``. The final norm is
``gpt_neox.final_layer_norm``; the unembedding is ``lm_head`` (transformers 4 named it ``embed_out``).
"""

from typing import Any

from torch import nn

from transfer_neurons.model.adapters.base import FamilyAdapter


class GPTNeoXAdapter(FamilyAdapter):
    family = "gpt_neox"
    gated_mlp = False

    def layers(self) -> Any:
        return self.model.gpt_neox.layers

    def down_projection(self, layer_index: int) -> nn.Linear:
        return self.layers()[layer_index].mlp.dense_4h_to_h

    def activation_function(self, layer_index: int) -> nn.Module:
        return self.layers()[layer_index].mlp.act

    def named_input_projections(self, layer_index: int) -> dict[str, nn.Linear]:
        return {"in": self.layers()[layer_index].mlp.dense_h_to_4h}

    def parallel_residual(self) -> bool:
        return bool(self.config.use_parallel_residual)

    def final_norm(self) -> nn.Module:
        return self.model.gpt_neox.final_layer_norm
