"""Deactivate (or scale) chosen MLP neurons at chosen token positions.

The hook multiplies the input of the down projection, i.e. the neuron activations, so
a factor of 0 removes exactly the neurons' writes ``a_i v_i`` from the residual stream
(for every family, including Gemma, whose post-MLP norm then sees the reduced sum).

Position modes (batches are left-padded, so the last real token is at position -1):

* ``last``: the last position of every forward pass (during generation, each new token);
* ``prompt``: every position of the first forward pass (the prompt), none afterwards;
* ``prompt_last``: the last prompt token during the prompt pass only (the paper's QA setup).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import contextmanager

import torch

from transfer_neurons.adapters import FamilyAdapter

POSITION_MODES = ("last", "prompt", "prompt_last")


def _positions_this_pass(mode: str, is_prompt_pass: bool) -> slice | None:
    """Which sequence positions to scale in this pass; ``None`` for none."""
    if mode == "last":
        return slice(-1, None)
    if not is_prompt_pass:
        return None
    return slice(None) if mode == "prompt" else slice(-1, None)


@contextmanager
def scaled_neurons(
    adapter: FamilyAdapter,
    neurons_by_layer: Mapping[int, Sequence[int]],
    factor: float = 0.0,
    positions: str = "prompt",
):
    """Within the context, multiply the chosen neurons' activations by ``factor``.

    Use one context per prompt batch: the first forward pass inside it is the prompt pass.
    """
    if positions not in POSITION_MODES:
        raise ValueError(f"positions must be one of {POSITION_MODES}, got {positions!r}")
    handles = []
    passes_seen: dict[int, int] = {}
    for layer, neurons in neurons_by_layer.items():
        if len(neurons) == 0:
            continue
        index = torch.as_tensor(list(neurons), dtype=torch.long)

        def scale_input(module, args, layer=layer, index=index):
            is_prompt_pass = passes_seen.get(layer, 0) == 0
            passes_seen[layer] = passes_seen.get(layer, 0) + 1
            selected = _positions_this_pass(positions, is_prompt_pass)
            if selected is None:
                return None
            activations = args[0].clone()
            chosen = index.to(activations.device)
            activations[:, selected, chosen] = activations[:, selected, chosen] * factor
            return (activations, *args[1:])

        handles.append(adapter.down_projection(layer).register_forward_pre_hook(scale_input))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def neurons_by_layer(layers: Sequence[int], neurons: Sequence[int]) -> dict[int, list[int]]:
    """Group (layer, neuron) pairs into ``{layer: [neurons]}``."""
    grouped: dict[int, list[int]] = {}
    for layer, neuron in zip(layers, neurons, strict=True):
        grouped.setdefault(int(layer), []).append(int(neuron))
    return grouped
