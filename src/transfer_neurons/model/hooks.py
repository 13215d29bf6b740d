"""Hooks on a model's native modules: read states, scale neurons, replay layers.

Everything that attaches to a forward pass lives here, keyed by the adapter's module paths
(``model.adapters``):

* ``capture_states`` reads, per layer, the quantities of ``adapters.base`` at the last token
  (or every position, for exactness tests);
* ``scaled_neurons`` multiplies chosen neuron activations (the input of the down projection)
  by a factor at chosen positions: a factor of 0 removes exactly the neurons' writes
  ``a_i v_i`` from the residual stream (for every family, including Gemma, whose post-MLP
  norm then sees the reduced sum);
* ``patched_neurons`` sets chosen neurons' activations at the last token to given values
  (activation patching), and ``last_token_edits`` scales and sets them for several runs at once,
  each on its own copy of a batch's rows;
* ``recording_layer_outputs`` / ``replaying_layer_outputs`` record decoder layers' outputs in
  one pass and return them in later passes of the same batch: an intervention on layer k
  cannot change layers 0..k-1, so those need not be computed again.

Position modes of ``scaled_neurons`` (batches are left-padded, so the last real token is at -1):

* ``last``: the last position of every forward pass (during generation, each new token);
* ``prompt``: every position of the first forward pass (the prompt), none afterwards;
* ``prompt_last``: the last prompt token during the prompt pass only (the paper's QA setup).

May import: ``model.adapters``, torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from transfer_neurons.model.adapters import FamilyAdapter, effective_activations


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

    @property
    def effective_activations(self) -> torch.Tensor:
        return effective_activations(self.neuron_activations, self.write_scale)


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


@contextmanager
def counting_active_neurons(adapter: FamilyAdapter, counted_positions: torch.Tensor):
    """Within the context, count per neuron the tokens where its activation function's output is > 0.

    ``counted_positions`` [batch, pos] (bool) marks the tokens to count (real tokens of the
    language, not padding or special tokens). Yields a dict that fills with ``{layer: [d_mlp]}``
    int64 counts; use one forward pass per context.
    """
    counts: dict[int, torch.Tensor] = {}
    mask = counted_positions.bool()

    def count(module, args, output, index):
        # The masked sum over tokens as a [1, tokens] x [tokens, d_mlp] product of 0/1 float32
        # values: half the time of a boolean and-then-sum, and exact, since a batch's count stays
        # far below float32's 2^24 integer limit.
        counted = mask.to(output.device, torch.float32).reshape(1, -1)
        active = (output > 0).to(torch.float32).reshape(-1, output.shape[-1])
        counts[index] = (counted @ active).reshape(-1).round().to(torch.int64).cpu()

    handles = [
        adapter.activation_function(index).register_forward_hook(
            lambda module, args, output, index=index: count(module, args, output, index)
        )
        for index in range(adapter.facts.n_layers)
    ]
    try:
        yield counts
    finally:
        for handle in handles:
            handle.remove()


POSITION_MODES = ("last", "prompt", "prompt_last")


def touches_only_last_token(positions: str) -> bool:
    """Whether no intervention in this position mode reaches a prompt token before the last.

    Then every condition's keys and values for those tokens equal the normal ones, so a batch's
    prefix is computed once and each condition runs only the last token from its cache.
    """
    return positions in ("last", "prompt_last")


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


# One run's last-token edits: (neurons scaled by the factor, {layer: (neurons, values [rows, n])} set).
LastTokenEdits = tuple[Mapping[int, Sequence[int]], Mapping[int, tuple[Sequence[int], torch.Tensor]]]


def patched_neurons(adapter: FamilyAdapter, patches: Mapping[int, tuple[Sequence[int], torch.Tensor]]):
    """Within the context, set chosen neurons' activations at the last position of every pass.

    ``patches[layer] = (neurons, values)`` with values [batch, len(neurons)]: the input of the
    layer's down projection takes these values there (activation patching).
    """
    return last_token_edits(adapter, [({}, patches)])


@contextmanager
def last_token_edits(adapter: FamilyAdapter, runs: Sequence[LastTokenEdits], factor: float = 0.0):
    """Within the context, several runs' edits at the last position of every pass, each on its own rows.

    With K = len(runs), run k owns rows k, k + K, k + 2K, ... (the layout ``batch_repeat_interleave``
    gives copies of a batch). Its scaled neurons are multiplied by ``factor``, as
    ``scaled_neurons(..., "last")`` does, and then its patched neurons take their values; one
    pre-hook per down projection serves every run.
    """
    copies = len(runs)
    edited_layers = sorted({layer for scaled, patches in runs for layer in (*scaled, *patches)})
    handles = []
    for layer in edited_layers:
        edits = [(scaled.get(layer, ()), patches.get(layer)) for scaled, patches in runs]

        def edit_input(module, args, edits=edits):
            activations = args[0].clone()
            last = activations[:, -1]  # a view: writing to it edits the clone
            for run, (scaled, patch) in enumerate(edits):
                if len(scaled):
                    chosen = torch.as_tensor(list(scaled), dtype=torch.long, device=last.device)
                    last[run::copies, chosen] = last[run::copies, chosen] * factor
                if patch is not None:
                    neurons, values = patch
                    chosen = torch.as_tensor(list(neurons), dtype=torch.long, device=last.device)
                    last[run::copies, chosen] = values.to(last.device, last.dtype)
            return (activations, *args[1:])

        handles.append(adapter.down_projection(layer).register_forward_pre_hook(edit_input))
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
