"""Read the residual stream, MLP contributions and neuron activations during a forward pass.

``capture_states`` registers hooks on the native modules that an adapter names and
returns, per layer, the quantities of ``adapters.base`` at the selected positions
(the last token by default, all positions for exactness tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from transfer_neurons.adapters import FamilyAdapter


@dataclass
class CapturedStates:
    """Per-layer tensors stacked on a layer axis: [layer, batch, (pos,) feature], float32."""

    layer_output: torch.Tensor
    mlp_contribution: torch.Tensor
    neuron_activations: torch.Tensor
    write_scale: torch.Tensor  # [layer, batch, (pos)]; ones where the family has no post-MLP norm

    @property
    def residual_pre_mlp(self) -> torch.Tensor:
        return self.layer_output - self.mlp_contribution


def _hidden_from_output(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _select(tensor: torch.Tensor, last_token_only: bool) -> torch.Tensor:
    selected = tensor[:, -1] if last_token_only else tensor
    # A copy, not a view: a view of the last position would keep the whole [batch, pos, feature]
    # tensor of every layer alive until the pass ends.
    return selected.detach().to(torch.float32, copy=True)


@contextmanager
def capture_states(adapter: FamilyAdapter, layers: Sequence[int] | None = None, last_token_only: bool = True):
    """Context manager yielding a dict that is filled with ``CapturedStates`` on exit.

    Use one forward pass per context. The yielded dict gets the key ``"states"``.
    """
    layer_indices = list(range(adapter.facts.n_layers)) if layers is None else list(layers)
    store: dict[str, dict[int, torch.Tensor]] = {k: {} for k in ("out", "contrib", "acts", "scale")}
    handles = []

    for index in layer_indices:

        def on_layer(module, args, output, index=index):
            store["out"][index] = _select(_hidden_from_output(output), last_token_only)

        def on_contribution(module, args, kwargs, output, index=index):
            store["contrib"][index] = _select(_hidden_from_output(output), last_token_only)
            mlp_output = adapter.first_positional(args, kwargs)
            # Only the selected positions' scale is kept, so only theirs is computed.
            scale = adapter.write_scale(index, mlp_output[:, -1:] if last_token_only else mlp_output)
            if scale is not None:
                store["scale"][index] = _select(scale, last_token_only)

        def on_down_projection(module, args, index=index):
            store["acts"][index] = _select(args[0], last_token_only)

        handles.append(adapter.layers()[index].register_forward_hook(on_layer))
        handles.append(adapter.contribution_module(index).register_forward_hook(on_contribution, with_kwargs=True))
        handles.append(adapter.down_projection(index).register_forward_pre_hook(on_down_projection))

    result: dict[str, CapturedStates] = {}
    try:
        yield result
    finally:
        for handle in handles:
            handle.remove()
    if len(store["out"]) != len(layer_indices):
        raise RuntimeError("capture_states saw no forward pass (or an incomplete one)")
    outputs = torch.stack([store["out"][i] for i in layer_indices])
    scales = (
        torch.stack([store["scale"][i] for i in layer_indices])
        if store["scale"]
        else torch.ones(outputs.shape[:-1], dtype=torch.float32)
    )
    result["states"] = CapturedStates(
        layer_output=outputs,
        mlp_contribution=torch.stack([store["contrib"][i] for i in layer_indices]),
        neuron_activations=torch.stack([store["acts"][i] for i in layer_indices]),
        write_scale=scales,
    )
