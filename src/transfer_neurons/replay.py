"""Record decoder layers' outputs in one pass and replay them in later passes of the same batch.

An intervention on layer k cannot change layers 0..k-1 (their inputs are the same), so a
later pass under that intervention may take those layers' outputs from a normal pass of the
same batch instead of computing them. For deactivations in late layers this skips most of
the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager

import torch

from transfer_neurons.adapters import FamilyAdapter


def _copied(output):
    """A copy of a layer output (a tensor, or a tuple led by one): in-place work downstream cannot alter it."""
    if isinstance(output, torch.Tensor):
        return output.clone()
    if isinstance(output, tuple):
        return tuple(item.clone() if isinstance(item, torch.Tensor) else item for item in output)
    raise TypeError(f"cannot replay a decoder layer output of type {type(output).__name__}")


@contextmanager
def recording_layer_outputs(adapter: FamilyAdapter):
    """Yield a dict that fills with ``{layer index: native output}`` during one forward pass."""
    recorded: dict[int, object] = {}
    handles = [
        layer.register_forward_hook(lambda module, args, output, index=index: recorded.__setitem__(index, output))
        for index, layer in enumerate(adapter.layers())
    ]
    try:
        yield recorded
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def replaying_layer_outputs(adapter: FamilyAdapter, outputs: Mapping[int, object]):
    """Within the context, the layers in ``outputs`` return their recorded output without computing.

    Forward hooks on those layers still run (they see the recorded output); hooks inside them do not.
    """
    layers = adapter.layers()
    patched = []
    try:
        for index, output in outputs.items():
            layers[index].forward = lambda *args, _output=output, **kwargs: _copied(_output)
            patched.append(layers[index])
        yield
    finally:
        for layer in patched:
            del layer.forward  # the instance attribute; the class's forward shows through again
