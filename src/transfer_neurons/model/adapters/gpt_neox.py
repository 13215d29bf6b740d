"""GPT-NeoX (Pythia): non-gated MLP with biases, parallel residual by default.

Native paths: ``gpt_neox.layers[l].mlp.{dense_h_to_4h, dense_4h_to_h}``; with
``use_parallel_residual`` the layer computes ``h + attn(ln1(h)) + mlp(ln2(h))``.
"""

from transfer_neurons.model.adapters.base import FamilyAdapter


class GPTNeoXAdapter(FamilyAdapter):
    family = "gpt_neox"
    gated_mlp = False

    def layers(self):
        return self.model.gpt_neox.layers

    def down_projection(self, layer_index: int):
        return self.layers()[layer_index].mlp.dense_4h_to_h

    def activation_function(self, layer_index: int):
        return self.layers()[layer_index].mlp.act

    def parallel_residual(self) -> bool:
        return bool(self.config.use_parallel_residual)
