"""Every hook on a model goes through one object: the ``HookSession``.

A session owns each handle it registers and removes them all when its block ends; no other module
registers hooks (as TransformerLens's ``HookedRootModule`` owns its hook points). It addresses named
sites of each decoder layer, through the adapter's native module paths (``model.adapters``):

* ``NEURONS``       [batch, pos, d_mlp]   the neurons' activations: the input of the down projection
* ``MLP_OUTPUT``    [batch, pos, d_model] what the MLP adds to the residual stream
* ``LAYER_OUTPUT``  [batch, pos, d_model] the raw residual stream after the layer
* ``ACTIVATION``    [batch, pos, d_mlp]   the activation function's output (> 0: active, as LAPE counts)

and offers these operations on them:

* ``capture``: per layer, the quantities of ``adapters.base`` at the last token (or every position);
  optionally also the final norm's output (``final_norm``: the last layer's state as HF's
  ``hidden_states[-1]`` gives it) and the first layer's input (``embedding``: ``hidden_states[0]``);
* ``count_active``: per neuron, the counted tokens where its activation function's output is > 0;
* ``edit_neurons``: scale chosen neurons' activations by a factor and set others to given values
  (activation patching), at positions of one vocabulary; a factor of 0 removes exactly the neurons'
  writes ``a_i v_i`` (for every family, including Gemma, whose post-MLP norm then sees the reduced sum);
* ``record_layers`` / ``replay_layers``: record decoder layers' outputs in one pass and return them in
  later passes of the same batch without computing them (an edit of layer k cannot change layers 0..k-1);
* ``observe``: call a function with a module's input or output (tests and diagnostics).

**Conditions as rows.** ``edit_neurons`` takes a list of K edits, one per condition; edit k applies to
rows k, k + K, k + 2K, ... of the batch, the layout ``stacked_rows`` (``model.batching``) and a
cache's ``batch_repeat_interleave`` give K copies of a batch. One pass then runs every condition.

**Positions.** Every pass belongs to one input whose first ``prompt_length`` positions are its prompt
(left-padded batches: the padded width; right-padded rows: each row's own length). Positions count
from the first token of the input, across the passes of a generation. The vocabulary, everywhere:

* ``prompt``: every prompt position;
* ``prompt_last``: the prompt's last position (the paper's QA setting "last prompt token");
* ``last``: the prompt's last position and every position after it: each new token of a generation,
  the positions that predict an answer's tokens when it is scored in the same pass as its prompt, and
  the last token of a sentence read alone;
* ``all``: every position of every pass.

May import: ``model.adapters``, ``model.batching``, torch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from transfer_neurons.model.adapters import FamilyAdapter, effective_activations
from transfer_neurons.model.batching import TokenizedBatch, last_token_forward, stacked_rows

if TYPE_CHECKING:
    from transformers import Cache, PreTrainedModel

NEURONS, MLP_OUTPUT, LAYER_OUTPUT, ACTIVATION = "neurons", "mlp_output", "layer_output", "activation"
POSITION_MODES = ("last", "prompt", "prompt_last", "all")


def check_positions(positions: str) -> str:
    if positions not in POSITION_MODES:
        raise ValueError(f"positions must be one of {POSITION_MODES}, got {positions!r}")
    return positions


def touches_only_last_token(positions: str) -> bool:
    """Whether no edit in this position mode reaches a prompt token before the last.

    Then every condition's keys and values for those tokens equal the normal ones, so a batch's
    prefix is computed once and each condition runs only the last token from its cache.
    """
    return positions in ("last", "prompt_last")


def position_mask(positions: str, first: int, width: int, prompt_length: int | torch.Tensor) -> torch.Tensor:
    """[rows or 1, width] bool: which of the positions ``first .. first + width - 1`` ``positions`` selects.

    ``prompt_length`` is one number for every row (left padding) or a [rows] tensor (right padding).
    """
    index = torch.arange(first, first + width)[None, :]
    length = torch.as_tensor(prompt_length).reshape(-1, 1).to(index.device)
    if positions == "prompt":
        return index < length
    if positions == "prompt_last":
        return index == length - 1
    if positions == "last":
        return index >= length - 1
    return torch.ones_like(index, dtype=torch.bool)


@dataclass(frozen=True)
class NeuronEdit:
    """One condition's edits of neuron activations (the input of each layer's down projection).

    ``scaled[layer]`` neurons are multiplied by ``factor``; then ``patched[layer] = (neurons, values)``
    neurons take ``values`` [rows, len(neurons)] (one row per row of the condition). Both at ``positions``.
    """

    scaled: Mapping[int, Sequence[int]] = field(default_factory=dict)
    factor: float = 0.0
    positions: str = "prompt"
    patched: Mapping[int, tuple[Sequence[int], torch.Tensor]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_positions(self.positions)

    def layers(self) -> set[int]:
        return {layer for layer, chosen in self.scaled.items() if len(chosen)} | set(self.patched)


@dataclass
class CapturedStates:
    """Per-layer tensors stacked on a layer axis: [layer, batch, (pos,) feature], float32."""

    layer_output: torch.Tensor
    mlp_contribution: torch.Tensor
    neuron_activations: torch.Tensor
    write_scale: torch.Tensor  # [layer, batch, (pos)]; ones where the family has no post-MLP norm
    # [batch, (pos,) d_model], where the capture asked for them: the final norm's output (the normed last
    # layer, HF's hidden_states[-1]) and the first decoder layer's input (the embedding, hidden_states[0]).
    final_normed: torch.Tensor | None = None
    embedding: torch.Tensor | None = None

    @property
    def residual_pre_mlp(self) -> torch.Tensor:
        return self.layer_output - self.mlp_contribution

    @property
    def effective_activations(self) -> torch.Tensor:
        return effective_activations(self.neuron_activations, self.write_scale)

    def rows(self, index: int, copies: int) -> CapturedStates:
        """The states of copy ``index``'s rows in a stacked batch (row r of copy k is row r * copies + k)."""

        def picked(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor[index::copies]

        return CapturedStates(
            self.layer_output[:, index::copies], self.mlp_contribution[:, index::copies],
            self.neuron_activations[:, index::copies], self.write_scale[:, index::copies],
            final_normed=picked(self.final_normed), embedding=picked(self.embedding),
        )  # fmt: skip


def _hidden_from_output(output: torch.Tensor | tuple[Any, ...]) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _select(tensor: torch.Tensor, last_token_only: bool) -> torch.Tensor:
    selected = tensor[:, -1] if last_token_only else tensor
    # A copy, not a view: a view of the last position would keep the whole [batch, pos, feature]
    # tensor of every layer alive until the pass ends.
    return selected.detach().to(torch.float32, copy=True)


class Capture:
    """What ``HookSession.capture`` fills during one forward pass; ``states`` once it has run."""

    def __init__(self, layers: Sequence[int], final_norm: bool = False, embedding: bool = False) -> None:
        self.layers = list(layers)
        self.store: dict[str, dict[int, torch.Tensor]] = {key: {} for key in ("out", "contrib", "acts", "scale")}
        # Filled under key 0, where asked for: the final norm's output and the first layer's input.
        wanted = {"final_normed": final_norm, "embedding": embedding}
        self.extra: dict[str, dict[int, torch.Tensor]] = {name: {} for name, asked in wanted.items() if asked}

    @property
    def states(self) -> CapturedStates:
        if len(self.store["out"]) != len(self.layers):
            raise RuntimeError("the capture saw no forward pass (or an incomplete one)")
        outputs = torch.stack([self.store["out"][i] for i in self.layers])
        scales = (
            torch.stack([self.store["scale"][i] for i in self.layers])
            if self.store["scale"]
            else torch.ones(outputs.shape[:-1], dtype=torch.float32)
        )
        if any(stored == {} for stored in self.extra.values()):
            raise RuntimeError("the capture saw no final norm or first layer input in its pass")
        return CapturedStates(
            layer_output=outputs,
            mlp_contribution=torch.stack([self.store["contrib"][i] for i in self.layers]),
            neuron_activations=torch.stack([self.store["acts"][i] for i in self.layers]),
            write_scale=scales,
            **{name: stored[0] for name, stored in self.extra.items()},
        )


class NeuronEdits:
    """The edits ``HookSession.edit_neurons`` applies; ``restart`` starts a new input."""

    def __init__(self, edits: Sequence[NeuronEdit], prompt_length: int | torch.Tensor | None, start: int) -> None:
        self.edits = list(edits)
        self.restart(prompt_length, start)

    def restart(self, prompt_length: int | torch.Tensor | None = None, start: int = 0) -> None:
        """The next pass is the first of a new input whose prompt has ``prompt_length`` positions (``None``:
        what that first pass reads) and whose first ``start`` positions are already cached (a shared prefix)."""
        self.prompt_length = prompt_length
        self.start = start
        self.seen: dict[int, int] = {}  # layer -> positions it has processed since the input began

    def apply(self, layer: int, activations: torch.Tensor) -> torch.Tensor:
        """The edited copy of one pass's [batch, width, d_mlp] activations of ``layer``."""
        first = self.start + self.seen.get(layer, 0)
        width = activations.shape[1]
        if self.prompt_length is None:
            self.prompt_length = self.start + width
        self.seen[layer] = self.seen.get(layer, 0) + width
        edited = activations.clone()
        copies = len(self.edits)
        wheres: dict[str, slice | torch.Tensor | None] = {}  # one per position mode in this pass
        for index, edit in enumerate(self.edits):
            scaled, patch = edit.scaled.get(layer, ()), edit.patched.get(layer)
            if not len(scaled) and patch is None:
                continue
            rows = edited[index::copies]  # a view: writing to it edits the clone
            if edit.positions not in wheres:
                wheres[edit.positions] = self._where(edit.positions, first, width, rows.shape[0], activations.device)
            where = wheres[edit.positions]
            if where is None:
                continue
            if len(scaled):
                chosen = torch.as_tensor(list(scaled), dtype=torch.long, device=rows.device)
                _write(rows, where, chosen, rows[..., chosen] * edit.factor)
            if patch is not None:
                neurons, values = patch
                chosen = torch.as_tensor(list(neurons), dtype=torch.long, device=rows.device)
                _write(rows, where, chosen, values.to(rows.device, rows.dtype)[:, None, :].expand(-1, width, -1))
        return edited

    def _where(
        self, positions: str, first: int, width: int, rows: int, device: torch.device
    ) -> slice | torch.Tensor | None:
        """The positions to edit in this pass: a slice when every row agrees, else a [rows, width] mask."""
        assert self.prompt_length is not None  # ``apply`` sets it on the input's first pass
        mask = position_mask(positions, first, width, self.prompt_length)
        if mask.shape[0] == 1:
            chosen = mask[0].nonzero().flatten()
            if not len(chosen):
                return None
            low, high = int(chosen[0]), int(chosen[-1]) + 1
            if high - low == len(chosen):  # contiguous, as every mode gives for one prompt length
                return slice(low, high)
            mask = mask.expand(rows, -1)
        if mask.shape[0] != rows:
            raise ValueError(f"prompt lengths for {mask.shape[0]} rows, but a condition has {rows} rows")
        return mask.to(device)


def _write(rows: torch.Tensor, where: slice | torch.Tensor, chosen: torch.Tensor, values: torch.Tensor) -> None:
    """rows[:, where, chosen] = values[:, where] ([rows, width, len(chosen)] values), in place."""
    if isinstance(where, slice):
        rows[:, where, chosen] = values[:, where]
    else:
        current = rows[..., chosen]
        rows[..., chosen] = torch.where(where[..., None], values, current)


def _copied(output: object, copies: int = 1) -> torch.Tensor | tuple[Any, ...]:
    """A copy of a layer output (a tensor, or a tuple led by one) with each row repeated ``copies`` times:
    in-place work downstream cannot alter the recorded one."""

    def copied(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.repeat_interleave(copies, dim=0) if copies > 1 else tensor.clone()

    if isinstance(output, torch.Tensor):
        return copied(output)
    if isinstance(output, tuple):
        return tuple(copied(item) if isinstance(item, torch.Tensor) else item for item in output)
    raise TypeError(f"cannot replay a decoder layer output of type {type(output).__name__}")


class HookSession:
    """Owns every hook and layer replacement on one model; all are removed when the block ends.

    Operations registered in one session run in the order they were added: a capture added after
    an edit sees the edited activations.
    """

    def __init__(self, adapter: FamilyAdapter) -> None:
        self.adapter = adapter
        self._handles: list[RemovableHandle] = []
        self._replaced: list[nn.Module] = []

    def __enter__(self) -> HookSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for module in self._replaced:
            del module.forward  # the instance attribute; the class's forward shows through again
        self._replaced.clear()

    # --- sites -----------------------------------------------------------------------------
    def site(self, name: str, layer: int) -> nn.Module:
        """The native module of a named site of one layer (its input for ``NEURONS``, else its output)."""
        modules = {
            NEURONS: self.adapter.down_projection,
            MLP_OUTPUT: self.adapter.contribution_module,
            LAYER_OUTPUT: lambda index: self.adapter.layers()[index],
            ACTIVATION: self.adapter.activation_function,
        }
        if name not in modules:
            raise ValueError(f"unknown site {name!r}; sites: {', '.join(modules)}")
        return modules[name](layer)

    def observe(
        self, module: nn.Module, function: Callable[..., Any], *, before: bool = False, with_kwargs: bool = False
    ) -> RemovableHandle:
        """Call ``function(module, args[, kwargs], output)`` after ``module`` runs, or ``function(module, args)``
        before it (its return value replaces the input, as a forward pre-hook's does). The one place
        hooks are registered."""
        if before:
            handle = module.register_forward_pre_hook(function, with_kwargs=with_kwargs)
        else:
            handle = module.register_forward_hook(function, with_kwargs=with_kwargs)
        self._handles.append(handle)
        return handle

    def _layers(self, layers: Sequence[int] | None) -> list[int]:
        return list(range(self.adapter.facts.n_layers)) if layers is None else list(layers)

    # --- operations --------------------------------------------------------------------------
    def capture(
        self, layers: Sequence[int] | None = None, last_token_only: bool = True, *, final_norm: bool = False,
        embedding: bool = False,
    ) -> Capture:  # fmt: skip
        """Record each layer's output, MLP contribution, neuron activations and write scale in the next
        pass (at the last position, or at every one).

        With ``final_norm``, ``states.final_normed`` [batch, (pos,) d_model] is the final norm's output:
        the last layer's state as the paper reads it (HF's ``hidden_states[-1]``; the raw one stays in
        ``layer_output``). With ``embedding``, ``states.embedding`` is the first decoder layer's input
        (``hidden_states[0]``: the embedding output, scaled or normed as the family does).
        """
        capture = Capture(self._layers(layers), final_norm, embedding)
        adapter, store = self.adapter, capture.store

        def on_final_norm(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            capture.extra["final_normed"][0] = _select(_hidden_from_output(output), last_token_only)

        def on_first_layer_input(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            capture.extra["embedding"][0] = _select(adapter.first_positional(args, kwargs), last_token_only)

        if final_norm:
            self.observe(adapter.final_norm(), on_final_norm)
        if embedding:
            self.observe(adapter.layers()[0], on_first_layer_input, before=True, with_kwargs=True)
        for index in capture.layers:

            def on_layer(module: nn.Module, args: tuple[Any, ...], output: Any, index: int = index) -> None:
                store["out"][index] = _select(_hidden_from_output(output), last_token_only)

            def on_contribution(
                module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any, index: int = index
            ) -> None:
                store["contrib"][index] = _select(_hidden_from_output(output), last_token_only)
                mlp_output = adapter.first_positional(args, kwargs)
                # Only the selected positions' scale is kept, so only theirs is computed.
                scale = adapter.write_scale(index, mlp_output[:, -1:] if last_token_only else mlp_output)
                if scale is not None:
                    store["scale"][index] = _select(scale, last_token_only)

            def on_neurons(module: nn.Module, args: tuple[Any, ...], index: int = index) -> None:
                store["acts"][index] = _select(args[0], last_token_only)

            self.observe(self.site(LAYER_OUTPUT, index), on_layer)
            self.observe(self.site(MLP_OUTPUT, index), on_contribution, with_kwargs=True)
            self.observe(self.site(NEURONS, index), on_neurons, before=True)
        return capture

    def count_active(self, counted_positions: torch.Tensor) -> dict[int, torch.Tensor]:
        """A dict that fills with ``{layer: [d_mlp]}`` int64 counts of the tokens where each neuron's
        activation function's output is > 0, among ``counted_positions`` [batch, pos] (bool: real tokens
        of the language, not padding or special tokens). One pass."""
        counts: dict[int, torch.Tensor] = {}
        mask = counted_positions.bool()

        def count(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor, index: int) -> None:
            # The masked sum over tokens as a [1, tokens] x [tokens, d_mlp] product of 0/1 float32
            # values: half the time of a boolean and-then-sum, and exact, since a batch's count stays
            # far below float32's 2^24 integer limit.
            counted = mask.to(output.device, torch.float32).reshape(1, -1)
            active = (output > 0).to(torch.float32).reshape(-1, output.shape[-1])
            counts[index] = (counted @ active).reshape(-1).round().to(torch.int64).cpu()

        for index in self._layers(None):
            self.observe(self.site(ACTIVATION, index), lambda module, args, output, index=index: count(
                module, args, output, index))  # fmt: skip
        return counts

    def edit_neurons(
        self, edits: Sequence[NeuronEdit], prompt_length: int | torch.Tensor | None = None, start: int = 0
    ) -> NeuronEdits:
        """Apply ``edits`` (edit k to rows k, k + K, ...; K = len(edits)) to the neurons' activations.

        ``prompt_length`` and ``start`` say where the input's prompt ends and how many of its positions
        are already cached (see the module's docstring); ``NeuronEdits.restart`` begins a new input.
        """
        applied = NeuronEdits(edits, prompt_length, start)
        for layer in sorted(set().union(*(edit.layers() for edit in applied.edits))):
            self.observe(self.site(NEURONS, layer), lambda module, args, layer=layer: (
                applied.apply(layer, args[0]), *args[1:]), before=True)  # fmt: skip
        return applied

    def record_layers(self) -> dict[int, object]:
        """A dict that fills with ``{layer index: native output}`` during one pass."""
        recorded: dict[int, object] = {}
        for index in self._layers(None):
            self.observe(self.site(LAYER_OUTPUT, index), lambda module, args, output, index=index: recorded.__setitem__(
                index, output))  # fmt: skip
        return recorded

    def replay_layers(self, outputs: Mapping[int, object], copies: int = 1) -> None:
        """The layers in ``outputs`` return their recorded output without computing, each row repeated
        ``copies`` times in the stacked layout (``model.batching.stacked_rows``).

        Forward hooks on those layers still run (they see the recorded output); hooks inside them do not.
        """
        layers = self.adapter.layers()
        for index, output in outputs.items():
            layers[index].forward = lambda *args, _output=output, **kwargs: _copied(_output, copies)
            self._replaced.append(layers[index])


# --- conditions as rows of one pass ---------------------------------------------------------------
def last_token_states(
    model: PreTrainedModel, adapter: FamilyAdapter, batch: TokenizedBatch, prefix: Cache,
    edits: Sequence[NeuronEdit], *, final_norm: bool = False,
) -> list[CapturedStates]:  # fmt: skip
    """Every layer's states at the last token of ``len(edits)`` copies of the batch, copy k under edit k,
    each continuing from its own copy of ``prefix`` (the cache of every token but the last), in one pass.

    Returns one ``CapturedStates`` per edit ([layer, batch, feature]; ``final_norm`` as ``capture``'s).
    """
    copies = len(edits)
    cache = copy.deepcopy(prefix)
    cache.batch_repeat_interleave(copies)
    width = batch.input_ids.shape[1]
    with torch.no_grad(), HookSession(adapter) as session:
        session.edit_neurons(edits, prompt_length=width, start=width - 1)
        capture = session.capture(final_norm=final_norm)
        last_token_forward(model, stacked_rows(batch, copies), cache)
    states = capture.states
    return [states.rows(index, copies) for index in range(copies)]


# --- one-operation sessions, for the common cases ------------------------------------------------
@contextmanager
def capture_states(
    adapter: FamilyAdapter, layers: Sequence[int] | None = None, last_token_only: bool = True
) -> Iterator[dict[str, CapturedStates]]:
    """A session that captures one pass; yields a dict that gets ``"states"`` (``CapturedStates``) on exit."""
    result: dict[str, CapturedStates] = {}
    with HookSession(adapter) as session:
        capture = session.capture(layers, last_token_only)
        yield result
    result["states"] = capture.states


@contextmanager
def scaled_neurons(
    adapter: FamilyAdapter, neurons_by_layer: Mapping[int, Sequence[int]], factor: float = 0.0,
    positions: str = "prompt",
) -> Iterator[HookSession]:  # fmt: skip
    """A session that multiplies the chosen neurons' activations by ``factor`` at ``positions``.

    Use one session per input: the first pass inside it is the prompt pass.
    """
    with HookSession(adapter) as session:
        session.edit_neurons([NeuronEdit(neurons_by_layer, factor, positions)])
        yield session


def neurons_by_layer(layers: Sequence[int], neurons: Sequence[int]) -> dict[int, list[int]]:
    """Group (layer, neuron) pairs into ``{layer: [neurons]}``."""
    grouped: dict[int, list[int]] = {}
    for layer, neuron in zip(layers, neurons, strict=True):
        grouped.setdefault(int(layer), []).append(int(neuron))
    return grouped
