"""Fine-tuning only chosen MLP neurons (issue 26), and LoRA on the MLP with as many trainable parameters.

**Neuron deltas.** Neuron i of layer l owns row i of each input projection (gate and up for gated MLPs,
``dense_h_to_4h`` for BLOOM and GPT-NeoX) and column i of the down projection. ``NeuronDelta`` trains
only those: per layer, ``delta_in[role]`` [n_l, d_model] per input projection and ``delta_out``
[d_model, n_l], added to the native weights through ``torch.nn.utils.parametrize``
(W_eff = W0 + scatter(delta)). Every base parameter is frozen, and the optimizer is built from the
deltas alone, so nothing else can move. Biases stay frozen: the brief's unit is the neuron's weights,
and LoRA (``bias="none"``) trains no biases either.

**LoRA.** ``lora_config_matching`` spreads LoRA ranks over the MLP modules so that the trainable count
equals a neuron set's where that is possible (see its docstring for the rule).

**Training.** ``train`` minimises the causal-LM loss (mean NLL per predicted token, the per-token loss
of ``evaluation.loss``) on left-padded batches with AdamW at a constant learning rate, in the model's
eval mode (no dropout: the comparison is between parameter sets, not regularisers). A step's sentences
depend only on the seed and the step; a step's sentences run in micro-batches of at most
``max_batch_tokens`` padded tokens with the gradients summed, so memory does not change the maths.
Every ``checkpoint_every`` steps, the deltas, the optimizer state, the step and the RNG state go to
``work_dir/checkpoint.safetensors``; a new call resumes from it when it was made with the same settings,
sentences and trainable set. The final ``delta.safetensors`` is written once, atomically, at the end.

Files are safetensors (no pickle): only the trained deltas, never a copy of the model.

**The workflow stage.** ``run_finetune`` (rule ``finetune``) trains one set of ``finetune_sets`` on a
language's training text; ``run_finetuned_evaluation`` (rule ``evaluate_finetuned``) adds a delta to the
base model and measures it with the other analyses' functions (loss, QA, multiple choice, k-NN).

May import: ``model``, ``data``, ``names``, the other analyses of ``evaluation``, torch, peft,
safetensors, numpy, polars, tqdm.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np
import polars as pl
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils import parametrize
from tqdm import tqdm

from transfer_neurons.data.dumps import Dump, kept_pairs
from transfer_neurons.data.qa import load_qa
from transfer_neurons.data.tidy import labelled
from transfer_neurons.evaluation.alignment import check_knn_ks, nearest_neighbours
from transfer_neurons.evaluation.choices import accuracy_by_run, read_items
from transfer_neurons.evaluation.conditions import condition_neurons
from transfer_neurons.evaluation.finetune_sets import (
    LORA_MATCHED_SET,
    LORA_SET,
    MEASURE_UNITS,
    TRAINED_SETS,
    set_conditions,
)
from transfer_neurons.evaluation.loss import losses_by_run, predicted_positions, token_losses
from transfer_neurons.evaluation.qa import f1_by_run
from transfer_neurons.evaluation.states import alignment_of, states_by_run
from transfer_neurons.model.adapters import FamilyAdapter, ModelFacts, adapter_for
from transfer_neurons.model.batching import length_sorted_batches, token_lengths, tokenize
from transfer_neurons.model.hooks import NeuronEdit
from transfer_neurons.model.loading import LoadedModel, load_model
from transfer_neurons.names import NORMAL, PIVOT_SIDE

if TYPE_CHECKING:
    from peft import LoraConfig
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)
Model = TypeVar("Model", bound=nn.Module)

DELTA_FILE = "delta.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"
FILE_FORMAT = "transfer_neurons.finetune/1"
NEURONS, LORA = "neurons", "lora"
# peft 0.21.2 asks transformers 5.24 a deprecated question on every wrap; the answer is still right.
PEFT_DEPRECATION = "`is_gradient_checkpointing` is deprecated"


@dataclass(frozen=True)
class TrainingSettings:
    """How to train: ``steps`` optimizer steps of ``batch_size`` sentences each.

    ``max_batch_tokens`` bounds one forward pass's padded tokens (None: a step is one pass);
    ``log_every`` steps the progress bar and the log show the mean loss; ``checkpoint_every`` steps a
    checkpoint is written.
    """

    steps: int
    learning_rate: float
    batch_size: int
    seed: int = 0
    max_batch_tokens: int | None = None
    log_every: int = 10
    checkpoint_every: int = 50

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "checkpoint_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TrainingSettings.{name} must be positive, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"TrainingSettings.learning_rate must be positive, got {self.learning_rate}")
        if self.max_batch_tokens is not None and self.max_batch_tokens <= 0:
            raise ValueError(f"TrainingSettings.max_batch_tokens must be positive or None, got {self.max_batch_tokens}")

    def trajectory(self) -> dict:
        """The settings that decide the weights after a given step (not how many steps, nor logging)."""
        return {"learning_rate": self.learning_rate, "batch_size": self.batch_size, "seed": self.seed,
                "max_batch_tokens": self.max_batch_tokens}  # fmt: skip


@dataclass
class TrainingResult:
    """What ``train`` did: one ``log`` record per step (step, epoch, loss, sentences, tokens, the step's seconds),
    the written ``delta_path``, the number of trained parameters, the step it resumed from (None: from
    the start) and ``notes`` on checkpoints found, used or discarded."""

    log: list[dict]
    delta_path: Path
    trainable_count: int
    resumed_from_step: int | None
    notes: list[str] = field(default_factory=list)


# --- neuron sets and their parameter count -------------------------------------------------------


def checked_neurons(neurons_by_layer: Mapping[int, Sequence[int]], facts: ModelFacts) -> dict[int, list[int]]:
    """``{layer: sorted neuron indices}`` without empty layers; fails on a repeated or out-of-range index."""
    checked = {}
    for layer, neurons in sorted((int(layer), list(neurons)) for layer, neurons in neurons_by_layer.items()):
        if not 0 <= layer < facts.n_layers:
            raise ValueError(f"neuron set: layer {layer} is outside 0..{facts.n_layers - 1}")
        indices = sorted(int(neuron) for neuron in neurons)
        repeated = sorted({index for index in indices if indices.count(index) > 1})
        if repeated:
            raise ValueError(f"neuron set: layer {layer} lists neurons {repeated} more than once")
        outside = [index for index in indices if not 0 <= index < facts.d_mlp]
        if outside:
            raise ValueError(f"neuron set: layer {layer} has neurons {outside} outside 0..{facts.d_mlp - 1}")
        if indices:
            checked[layer] = indices
    if not checked:
        raise ValueError("neuron set: no neurons chosen")
    return checked


def facts_of(source: ModelFacts | FamilyAdapter) -> ModelFacts:
    return source if isinstance(source, ModelFacts) else source.facts


def input_projection_count(facts: ModelFacts) -> int:
    """Input projections per MLP: gate and up (gated), or the one ``dense_h_to_4h``."""
    return 2 if facts.gated_mlp else 1


def trainable_parameter_count(
    neurons_by_layer: Mapping[int, Sequence[int]], facts_or_adapter: ModelFacts | FamilyAdapter
) -> int:
    """Parameters ``NeuronDelta`` trains: per neuron, one d_model row per input projection and one column."""
    facts = facts_of(facts_or_adapter)
    n_neurons = sum(len(neurons) for neurons in checked_neurons(neurons_by_layer, facts).values())
    return n_neurons * (input_projection_count(facts) + 1) * facts.d_model


# --- neuron deltas ---------------------------------------------------------------------------------


def shifted_rows(weight: torch.Tensor, dim: int, neurons: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """The slices ``neurons`` of ``weight`` along ``dim`` plus ``delta``, in the weight's dtype.

    The sum is taken in float32 (the deltas' dtype) so that a bf16 model's small updates are not lost
    before they reach the weight. Training (the parametrization) and ``apply_delta`` both use this.
    """
    return (weight.index_select(dim, neurons).float() + delta).to(weight.dtype)


class NeuronShift(nn.Module):
    """Parametrization ``W0 -> W0`` with ``delta`` added to rows (``dim`` 0) or columns (``dim`` 1) ``neurons``.

    Every other entry of the result is a copy of W0's, bit for bit.
    """

    neurons: torch.Tensor  # a buffer

    def __init__(self, neurons: torch.Tensor, delta_shape: tuple[int, int], dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("neurons", neurons, persistent=False)
        self.delta = nn.Parameter(torch.zeros(delta_shape, dtype=torch.float32, device=neurons.device))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.index_copy(self.dim, self.neurons, shifted_rows(weight, self.dim, self.neurons, self.delta))


def freeze(model: nn.Module) -> dict[str, bool]:
    """Set ``requires_grad=False`` on every parameter; return the previous flags by name."""
    flags = {}
    for name, parameter in model.named_parameters():
        flags[name] = parameter.requires_grad
        parameter.requires_grad_(False)
    return flags


def restore_flags(model: nn.Module, flags: Mapping[str, bool]) -> None:
    for name, parameter in model.named_parameters():
        if name in flags:
            parameter.requires_grad_(flags[name])


def file_metadata(kind: str, adapter: FamilyAdapter, layers: Sequence[int], **extra: str) -> dict[str, str]:
    return {"format": FILE_FORMAT, "kind": kind, "family": adapter.family, "architecture": type(adapter.model).__name__,
            "layers": json.dumps([int(layer) for layer in layers]), **extra}  # fmt: skip


class NeuronDelta:
    """Trainable deltas on the weights of the chosen neurons only, built from ``{layer: [neurons]}``.

    Construction freezes every parameter of the model and registers one ``NeuronShift`` per touched
    weight; ``parameters()`` are the deltas, the only tensors an optimizer should see. ``merge()`` bakes
    the deltas into the weights and removes the parametrizations; ``remove()`` drops them unapplied.
    Both restore the parameters' previous ``requires_grad``.
    """

    kind = NEURONS

    def __init__(self, adapter: FamilyAdapter, neurons_by_layer: Mapping[int, Sequence[int]]) -> None:
        self.adapter = adapter
        self.neurons = checked_neurons(neurons_by_layer, adapter.facts)
        self.roles = list(adapter.named_input_projections(0))
        self.flags = freeze(adapter.model)  # before registering: the deltas must stay trainable
        self.shifts: dict[str, tuple[nn.Linear, NeuronShift]] = {}
        device = adapter.down_projection(0).weight.device
        d_model = adapter.facts.d_model
        for layer, neurons in self.neurons.items():
            index = torch.tensor(neurons, dtype=torch.long, device=device)
            for role, projection in adapter.named_input_projections(layer).items():
                self._attach(
                    f"layer.{layer}.delta_in.{role}", projection, NeuronShift(index, (len(neurons), d_model), 0)
                )
            down = adapter.down_projection(layer)
            self._attach(f"layer.{layer}.delta_out", down, NeuronShift(index, (d_model, len(neurons)), 1))

    def _attach(self, key: str, module: nn.Linear, shift: NeuronShift) -> None:
        parametrize.register_parametrization(module, "weight", shift)
        self.shifts[key] = (module, shift)

    def named_parameters(self) -> dict[str, nn.Parameter]:
        """The deltas by file key: ``layer.{l}.delta_in.{role}`` [n_l, d_model], ``layer.{l}.delta_out``
        [d_model, n_l]."""
        return {key: shift.delta for key, (_, shift) in self.shifts.items()}

    def parameters(self) -> list[nn.Parameter]:
        return list(self.named_parameters().values())

    @property
    def trainable_count(self) -> int:
        return sum(parameter.numel() for parameter in self.parameters())

    def description(self) -> dict:
        """What is trained, for checkpoint fingerprints."""
        return {"kind": self.kind, "neurons": {str(layer): neurons for layer, neurons in self.neurons.items()}}

    def save_delta(self, path: Path) -> None:
        """Write the deltas and ``layer.{l}.neurons`` (int64 [n_l]) as safetensors, atomically.

        Metadata: format, kind, family, architecture, layers (JSON list) and input roles (JSON list).
        """
        tensors = {key: delta.detach().cpu().contiguous() for key, delta in self.named_parameters().items()}
        for layer, neurons in self.neurons.items():
            tensors[f"layer.{layer}.neurons"] = torch.tensor(neurons, dtype=torch.int64)
        metadata = file_metadata(NEURONS, self.adapter, list(self.neurons), input_roles=json.dumps(self.roles))
        atomic_save_file(tensors, Path(path), metadata)

    def merge(self) -> None:
        """Bake W0 + delta into each weight (the same Parameter objects) and remove the parametrizations."""
        self._remove(leave_parametrized=True)

    def remove(self) -> None:
        """Drop the parametrizations: the weights are W0 again."""
        self._remove(leave_parametrized=False)

    def _remove(self, leave_parametrized: bool) -> None:
        for module, _ in self.shifts.values():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=leave_parametrized)
        restore_flags(self.adapter.model, self.flags)


def add_neuron_delta_(adapter: FamilyAdapter, tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    """Add a saved neuron delta to the model's weights in place (``path`` names the file in errors)."""
    layers = sorted({int(key.split(".")[1]) for key in tensors if key.endswith(".neurons")})
    with torch.no_grad():
        for layer in layers:
            if not 0 <= layer < adapter.facts.n_layers:
                raise ValueError(f"{path}: layer {layer} is outside the model's 0..{adapter.facts.n_layers - 1}")
            weights = {f"delta_in.{role}": (projection.weight, 0)
                       for role, projection in adapter.named_input_projections(layer).items()}  # fmt: skip
            weights["delta_out"] = (adapter.down_projection(layer).weight, 1)
            neurons = tensors[f"layer.{layer}.neurons"].to(torch.long)
            for name, (weight, dim) in weights.items():
                key = f"layer.{layer}.{name}"
                if key not in tensors:
                    raise ValueError(f"{path}: no tensor {key!r} for this {adapter.family} model")
                delta = tensors[key].to(weight.device)
                index = neurons.to(weight.device)
                expected = (len(neurons), weight.shape[1]) if dim == 0 else (weight.shape[0], len(neurons))
                if tuple(delta.shape) != expected:
                    raise ValueError(f"{path}: {key} has shape {tuple(delta.shape)}, the model needs {expected}")
                weight.index_copy_(dim, index, shifted_rows(weight, dim, index, delta))


# --- LoRA ---------------------------------------------------------------------------------------------


def adapter_of(source: FamilyAdapter | LoadedModel | nn.Module) -> FamilyAdapter:
    """The family adapter of a model, a ``LoadedModel`` or an adapter."""
    if isinstance(source, FamilyAdapter):
        return source
    if isinstance(source, LoadedModel):
        return source.adapter
    return adapter_for(source)


def lora_module_ranks(adapter: FamilyAdapter, target_count: int, layers: Sequence[int] | None = None) -> dict[str, int]:
    """``{native module path: LoRA rank}`` whose trainable count is nearest ``target_count``.

    The rule: every MLP linear map (gate, up, down; or dense_h_to_4h, dense_4h_to_h) is d_model x d_mlp
    one way or the other, so rank r on it trains r * (d_model + d_mlp) parameters whatever the module.
    The total rank is R = max(1, round(target / (d_model + d_mlp))) (halves round up), exact when
    d_model + d_mlp divides the target. R is spread as evenly as possible over the MLP modules of
    ``layers`` (default: every layer) in layer order: each gets R // M, and the R % M extra units go to
    evenly spaced modules; a module whose rank is 0 is left out.
    """
    facts = adapter.facts
    layers = list(range(facts.n_layers)) if layers is None else sorted({int(layer) for layer in layers})
    if not layers or not all(0 <= layer < facts.n_layers for layer in layers):
        raise ValueError(f"LoRA layers {layers} must be a non-empty subset of 0..{facts.n_layers - 1}")
    if target_count <= 0:
        raise ValueError(f"LoRA target parameter count must be positive, got {target_count}")
    per_rank = facts.d_model + facts.d_mlp
    total_rank = max(1, math.floor(target_count / per_rank + 0.5))
    modules = [path for layer in layers for path in adapter.mlp_module_names(layer).values()]
    base, extra = divmod(total_rank, len(modules))
    ranks = {}
    for position, path in enumerate(modules):
        # Bresenham spacing: module j gets one extra unit when floor((j+1) e / M) steps up.
        bonus = (position + 1) * extra // len(modules) - position * extra // len(modules)
        if base + bonus:
            ranks[path] = base + bonus
    return ranks


def lora_config_from_ranks(ranks: Mapping[str, int]) -> LoraConfig:
    """A ``peft.LoraConfig`` with rank ``ranks[path]`` on each listed module and scaling alpha / r = 1.

    Paths are escaped for peft's pattern keys, which it matches as regular expressions on name suffixes.
    """
    from peft import LoraConfig

    patterns = {re.escape(path): int(rank) for path, rank in ranks.items()}
    return LoraConfig(r=max(patterns.values()), lora_alpha=max(patterns.values()), target_modules=sorted(ranks),
                      rank_pattern=patterns, alpha_pattern=dict(patterns), lora_dropout=0.0, bias="none")  # fmt: skip


def lora_config_matching(
    model_or_adapter: FamilyAdapter | LoadedModel | nn.Module, target_count: int, layers: Sequence[int] | None = None
) -> tuple[LoraConfig, int]:
    """``(peft.LoraConfig, trainable count)``: LoRA on the MLP with ``target_count`` parameters when achievable.

    Achievable means d_model + d_mlp divides ``target_count``; otherwise the count is the nearest
    achievable one (see ``lora_module_ranks`` for the rule). ``layers`` restricts LoRA to those layers.
    """
    adapter = adapter_of(model_or_adapter)
    ranks = lora_module_ranks(adapter, target_count, layers)
    return lora_config_from_ranks(ranks), sum(ranks.values()) * (adapter.facts.d_model + adapter.facts.d_mlp)


def lora_config_json(config: LoraConfig) -> str:
    """The config as JSON (sets as sorted lists), as peft writes adapter_config.json, without the base
    model's path: a run directory's absolute path would make the delta's bytes differ from run to run, and
    the delta's metadata names the architecture it applies to."""
    values = {key: sorted(value) if isinstance(value, set) else value for key, value in config.to_dict().items()}
    values["base_model_name_or_path"] = None
    return json.dumps(values, sort_keys=True, default=str)


def lora_layers(adapter: FamilyAdapter, config: LoraConfig) -> list[int]:
    """Layers with at least one LoRA target module."""
    if config.target_modules is None or isinstance(config.target_modules, str):  # a regex would match no path
        raise ValueError(f"LoRA target_modules must list module paths, got {config.target_modules!r}")
    targets = set(config.target_modules)
    return [layer for layer in range(adapter.facts.n_layers)
            if targets & set(adapter.mlp_module_names(layer).values())]  # fmt: skip


class LoraDelta:
    """LoRA through peft on the model's own modules; the same interface as ``NeuronDelta``.

    The model object keeps being called directly (its modules now hold the LoRA layers), so that the
    batching's position ids reach it; ``peft_model`` is used for state dicts and merging only.
    """

    kind = LORA

    def __init__(self, adapter: FamilyAdapter, config: LoraConfig) -> None:
        from peft import get_peft_model

        self.adapter = adapter
        self.config = config
        self.layers = lora_layers(adapter, config)
        self.flags = freeze(adapter.model)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=PEFT_DEPRECATION, category=FutureWarning)
            self.peft_model = get_peft_model(adapter.model, config)
        self._parameters = {name: parameter for name, parameter in adapter.model.named_parameters()
                            if parameter.requires_grad}  # fmt: skip
        unexpected = [name for name in self._parameters if "lora_" not in name]
        if unexpected:
            raise RuntimeError(f"LoRA left non-adapter parameters trainable: {unexpected[:5]}")

    def named_parameters(self) -> dict[str, nn.Parameter]:
        return self._parameters

    def parameters(self) -> list[nn.Parameter]:
        return list(self._parameters.values())

    @property
    def trainable_count(self) -> int:
        return sum(parameter.numel() for parameter in self.parameters())

    def description(self) -> dict:
        return {"kind": self.kind, "config": json.loads(lora_config_json(self.config))}

    def save_delta(self, path: Path) -> None:
        """Write the adapter weights only (peft's ``get_peft_model_state_dict``), atomically.

        Metadata: format, kind, family, architecture, layers and the LoRA config as JSON.
        """
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(self.peft_model)
        tensors = {key: value.detach().cpu().contiguous() for key, value in state.items()}
        metadata = file_metadata(LORA, self.adapter, self.layers, lora_config=lora_config_json(self.config))
        atomic_save_file(tensors, Path(path), metadata)

    def merge(self) -> None:
        """Add B A * scaling to the base weights and put the plain modules back (in place)."""
        self.peft_model.merge_and_unload()
        restore_flags(self.adapter.model, self.flags)

    def remove(self) -> None:
        self.peft_model.unload()
        restore_flags(self.adapter.model, self.flags)


def add_lora_delta_(model: Model, tensors: Mapping[str, torch.Tensor], config_json: str, path: Path) -> Model:
    """Merge a saved LoRA adapter into ``model``'s weights (in place); return the model."""
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PEFT_DEPRECATION, category=FutureWarning)
        peft_model = get_peft_model(model, LoraConfig.from_peft_type(**json.loads(config_json)))
    # torch's load_state_dict result (missing_keys, unexpected_keys); peft annotates it as a bare namedtuple.
    result: Any = set_peft_model_state_dict(peft_model, dict(tensors))
    missing = [key for key in result.missing_keys if "lora_" in key]
    if result.unexpected_keys or missing:
        raise ValueError(f"{path}: LoRA weights do not fit this model (unexpected {result.unexpected_keys[:3]}, "
                         f"missing {missing[:3]})")  # fmt: skip
    return cast(Model, peft_model.merge_and_unload())  # the unwrapped ``model`` itself


# --- files --------------------------------------------------------------------------------------------


def canonical_header(path: Path) -> None:
    """Rewrite a safetensors file's JSON header in one fixed order: metadata keys sorted, then the tensors
    in the order of their data. safetensors writes metadata in hash order, which changes from process to
    process, so the same tensors and metadata would otherwise give different bytes from run to run."""
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    metadata = header.pop("__metadata__", None)
    ordered = {"__metadata__": dict(sorted(metadata.items()))} if metadata else {}
    ordered.update(sorted(header.items(), key=lambda item: item[1]["data_offsets"]))
    text = json.dumps(ordered, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the header is padded to 8 bytes, as safetensors writes it
    path.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + size :])


def atomic_save_file(tensors: Mapping[str, torch.Tensor], path: Path, metadata: Mapping[str, str]) -> None:
    """safetensors at ``path`` written to a temporary file in the same folder, then renamed over it.

    A killed writer leaves at most a ``.{name}.*.tmp`` file, never a partial ``path``.
    """
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        save_file(dict(tensors), temporary, metadata=dict(metadata))
        canonical_header(Path(temporary))
        with open(temporary, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata() or {}


def apply_delta(model: Model, path: Path) -> Model:
    """Add the delta saved by ``train`` (neurons or LoRA) to ``model``'s weights in place; return the model.

    The model must be the base model the delta was trained on (same architecture and shapes).
    """
    path = Path(path)
    metadata = read_metadata(path)
    if metadata.get("format") != FILE_FORMAT:
        raise ValueError(f"{path}: not a fine-tuning delta (format {metadata.get('format')!r}, want {FILE_FORMAT!r})")
    architecture = type(model).__name__
    if metadata["architecture"] != architecture:
        raise ValueError(f"{path}: trained on a {metadata['architecture']}, cannot apply to a {architecture}")
    tensors = load_file(str(path))
    if metadata["kind"] == LORA:
        return add_lora_delta_(model, tensors, metadata["lora_config"], path)
    if metadata["kind"] != NEURONS:
        raise ValueError(f"{path}: unknown delta kind {metadata['kind']!r}")
    add_neuron_delta_(adapter_for(model), tensors, path)
    return model


# --- training -------------------------------------------------------------------------------------------


def step_rows(n_sentences: int, batch_size: int, seed: int, step: int) -> list[int]:
    """The sentence indices of step ``step`` (0-based): each epoch is a fresh permutation seeded by
    ``(seed, epoch)``, cut into batches of ``batch_size`` (the last one of an epoch may be smaller).

    A step's rows depend only on these numbers, so a resumed run reads the same batches.
    """
    per_epoch = math.ceil(n_sentences / batch_size)
    epoch, position = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n_sentences)
    return order[position * batch_size : (position + 1) * batch_size].tolist()


def step_loss(model: nn.Module, tokenizer: PreTrainedTokenizerBase, sentences: Sequence[str],
              rows: Sequence[int], lengths: Sequence[int], settings: TrainingSettings,
              device: torch.device) -> tuple[float, int]:  # fmt: skip
    """Backpropagate the mean NLL per predicted token of sentences ``rows``; return it and the token count.

    Micro-batches of at most ``max_batch_tokens`` padded tokens each add their share
    (their summed NLL / the step's tokens), so the gradient equals one pass over the whole step.
    """
    n_tokens = sum(lengths[row] - 1 for row in rows)  # every real token but the first is predicted
    summed_loss = 0.0
    micro_batches = length_sorted_batches(
        [lengths[row] for row in rows], settings.batch_size, settings.max_batch_tokens
    )
    for positions in micro_batches:
        batch = tokenize(tokenizer, [sentences[rows[position]] for position in positions]).to(device)
        predicting = predicted_positions(batch.attention_mask)
        logits = model(**batch.model_inputs(model), logits_to_keep=predicting, use_cache=False).logits
        per_sentence = token_losses(logits, batch.input_ids, predicting)  # [B] mean NLL of each sentence
        summed = (per_sentence * predicting.sum(dim=1).to(per_sentence.device)).sum()
        (summed / n_tokens).backward()
        summed_loss += summed.item()
    return summed_loss / n_tokens, n_tokens


def run_fingerprint(delta: NeuronDelta | LoraDelta, settings: TrainingSettings, sentences: Sequence[str]) -> str:
    """SHA-256 of what decides the trajectory: the trainable set, the settings, the sentences, the model's shapes."""
    corpus = hashlib.sha256("\0".join(sentences).encode()).hexdigest()
    facts = delta.adapter.facts
    content = {"trainable": delta.description(), "settings": settings.trajectory(), "sentences": corpus,
               "model": {"architecture": type(delta.adapter.model).__name__, **asdict(facts)}}  # fmt: skip
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def save_checkpoint(path: Path, delta: NeuronDelta | LoraDelta, optimizer: torch.optim.Optimizer, step: int,
                    history: list[dict], fingerprint: str) -> None:  # fmt: skip
    """Deltas (``trainable/``), AdamW state (``optimizer/{index}/{key}``) and RNG states (``rng/``), atomically.

    Metadata: the step done, the run's fingerprint and the per-step log so far (JSON).
    """
    tensors = {f"trainable/{key}": value.detach().cpu().contiguous() for key, value in delta.named_parameters().items()}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"optimizer/{index}/{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng/cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for device_index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{device_index}"] = state
    metadata = {"format": FILE_FORMAT, "step": str(step), "fingerprint": fingerprint, "log": json.dumps(history)}
    atomic_save_file(tensors, path, metadata)


def load_checkpoint(
    path: Path, delta: NeuronDelta | LoraDelta, optimizer: torch.optim.Optimizer
) -> tuple[int, list[dict]]:
    """Restore what ``save_checkpoint`` wrote; return the step done and the log so far."""
    metadata = read_metadata(path)
    tensors = load_file(str(path))
    with torch.no_grad():
        for key, parameter in delta.named_parameters().items():
            parameter.copy_(tensors[f"trainable/{key}"])
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            _, index, name = key.split("/", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    torch.set_rng_state(tensors["rng/cpu"])
    cuda_states = [tensors[key] for key in sorted(key for key in tensors if key.startswith("rng/cuda/"))]
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
    return int(metadata["step"]), json.loads(metadata["log"])


def resume_point(path: Path, fingerprint: str, settings: TrainingSettings, delta: NeuronDelta | LoraDelta,
                 optimizer: torch.optim.Optimizer, notes: list[str]) -> tuple[int, list[dict]]:  # fmt: skip
    """The step to start from and the log so far: a consistent checkpoint's, else ``(0, [])`` with a note."""
    if not path.exists():
        return 0, []
    try:
        metadata = read_metadata(path)
        found, step = metadata.get("fingerprint"), int(metadata.get("step", -1))
    except Exception as error:  # an unreadable checkpoint is discarded, not fatal
        return discarded(notes, f"{path}: unreadable checkpoint ({error})")
    if found != fingerprint:
        return discarded(notes, f"{path}: checkpoint made with other settings, sentences or trainable set")
    if not 0 < step <= settings.steps:
        return discarded(notes, f"{path}: checkpoint at step {step} does not fit steps={settings.steps}")
    step, history = load_checkpoint(path, delta, optimizer)
    notes.append(f"{path}: resumed from step {step}")
    log.info(notes[-1])
    return step, history


def discarded(notes: list[str], reason: str) -> tuple[int, list[dict]]:
    notes.append(f"{reason}; starting from step 0")
    log.warning(notes[-1])
    return 0, []


def remove_stale_files(work_dir: Path, notes: list[str]) -> None:
    """Remove a previous run's final delta (the run is unfinished again) and temporary files of killed writes."""
    temporary = [*work_dir.glob(f".{DELTA_FILE}.*.tmp"), *work_dir.glob(f".{CHECKPOINT_FILE}.*.tmp")]
    for stale in [work_dir / DELTA_FILE, *temporary]:
        if stale.exists():
            stale.unlink()
            notes.append(f"removed {stale}")
            log.info(notes[-1])


def make_delta(adapter: FamilyAdapter, trainable: Mapping[int, Sequence[int]] | LoraConfig) -> NeuronDelta | LoraDelta:
    """``NeuronDelta`` for ``{layer: [neurons]}``, ``LoraDelta`` for a ``peft.LoraConfig``."""
    if isinstance(trainable, Mapping):
        return NeuronDelta(adapter, trainable)
    from peft import LoraConfig

    if isinstance(trainable, LoraConfig):
        return LoraDelta(adapter, trainable)
    raise TypeError(f"trainable must be {{layer: [neurons]}} or a peft.LoraConfig, got {type(trainable).__name__}")


def train(
    loaded_or_model: LoadedModel | nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    sentences: Sequence[str],
    trainable: Mapping[int, Sequence[int]] | LoraConfig,
    settings: TrainingSettings,
    work_dir: Path,
    progress: bool = True,
    on_step: Callable[[int, dict], None] | None = None,
) -> TrainingResult:
    """Train ``trainable`` on ``sentences`` with the causal-LM loss; write ``work_dir/delta.safetensors``.

    ``trainable`` is ``{layer: [neurons]}`` (a ``NeuronDelta``) or a ``peft.LoraConfig`` (e.g. from
    ``lora_config_matching``). On return the model holds the trained weights as plain parameters (the
    deltas merged, as ``apply_delta`` would add them to a fresh base model); if training raises, the
    model's weights are the base weights again. ``on_step(step, record)`` is called after each step
    (and its checkpoint). The caller writes ``result.log`` (one dict per step) to parquet.
    """
    model = loaded_or_model.model if isinstance(loaded_or_model, LoadedModel) else loaded_or_model
    adapter = adapter_of(loaded_or_model)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    remove_stale_files(work_dir, notes)
    sentences = list(sentences)
    if not sentences:
        raise ValueError("train: no sentences")
    lengths = token_lengths(tokenizer, sentences)
    short = [row for row, length in enumerate(lengths) if length < 2]
    if short:
        raise ValueError(f"train: sentences {short[:10]} have fewer than 2 tokens, so nothing to predict")
    device = next(model.parameters()).device
    checkpoint = work_dir / CHECKPOINT_FILE
    torch.manual_seed(settings.seed)  # LoRA's initialisation; nothing else draws
    delta = make_delta(adapter, trainable)
    try:
        optimizer = torch.optim.AdamW(delta.parameters(), lr=settings.learning_rate, weight_decay=0.0)
        fingerprint = run_fingerprint(delta, settings, sentences)
        start, history = resume_point(checkpoint, fingerprint, settings, delta, optimizer, notes)
        with torch.enable_grad(), tqdm(total=settings.steps, initial=start, desc="fine-tune", unit="step",
                                       disable=not progress) as bar:  # fmt: skip
            for step in range(start, settings.steps):
                started = time.perf_counter()
                rows = step_rows(len(sentences), settings.batch_size, settings.seed, step)
                loss, n_tokens = step_loss(model, tokenizer, sentences, rows, lengths, settings, device)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                record = {"step": step + 1, "epoch": step // math.ceil(len(sentences) / settings.batch_size),
                          "loss": loss, "sentences": len(rows), "tokens": n_tokens,
                          "seconds": time.perf_counter() - started}  # fmt: skip
                history.append(record)
                bar.update(1)
                if (step + 1) % settings.log_every == 0:
                    recent = float(np.mean([entry["loss"] for entry in history[-settings.log_every :]]))
                    bar.set_postfix(loss=f"{recent:.4f}")
                    log.info("step %d/%d: mean loss of the last %d steps %.4f", step + 1, settings.steps,
                             settings.log_every, recent)  # fmt: skip
                if (step + 1) % settings.checkpoint_every == 0 and step + 1 < settings.steps:
                    save_checkpoint(checkpoint, delta, optimizer, step + 1, history, fingerprint)
                if on_step is not None:
                    on_step(step + 1, record)
        delta.save_delta(work_dir / DELTA_FILE)
    except BaseException:
        delta.remove()
        raise
    delta.merge()
    checkpoint.unlink(missing_ok=True)  # the final delta supersedes it
    return TrainingResult(history, work_dir / DELTA_FILE, delta.trainable_count, start or None, notes)


# --- the workflow stage: neuron sets (their names: ``evaluation.finetune_sets``) -------------------------


def set_neurons(conditions: pl.DataFrame, name: str, control_seed: int) -> dict[int, list[int]]:
    """``{layer: sorted neurons}`` of neuron set ``name`` from a conditions table (``evaluation.conditions``)."""
    known = set(conditions["condition"].to_list())
    chosen: dict[int, set[int]] = {}
    for condition in set_conditions(name, control_seed):
        if condition not in known:
            raise ValueError(
                f"conditions table: no condition {condition!r} for neuron set {name!r}; evaluation.finetune."
                "control_seed must be one of evaluation.random_seeds, and magnitude-matched sets need "
                "evaluation.magnitude_matched: true"
            )
        for layer, neurons in condition_neurons(conditions, condition).items():
            chosen.setdefault(layer, set()).update(neurons)
    return {layer: sorted(neurons) for layer, neurons in sorted(chosen.items())}


def trainable_of(
    adapter: FamilyAdapter, conditions: pl.DataFrame, name: str, control_seed: int
) -> dict[int, list[int]] | LoraConfig:
    """What ``train`` trains for set ``name``: ``{layer: [neurons]}``, or for ``lora`` a ``peft.LoraConfig``
    on every layer's MLP with as many trainable parameters as the ``LORA_MATCHED_SET`` (nearest achievable)."""
    if name != LORA_SET:
        return set_neurons(conditions, name, control_seed)
    matched = trainable_parameter_count(set_neurons(conditions, LORA_MATCHED_SET, control_seed), adapter)
    config, _ = lora_config_matching(adapter, matched)
    return config


def set_sizes(
    adapter: FamilyAdapter, conditions: pl.DataFrame, names: Sequence[str], control_seed: int
) -> pl.DataFrame:
    """One row per set of ``names``: its neurons (null for LoRA) and trainable parameters."""
    rows = []
    for name in names:
        if name == LORA_SET:
            matched = trainable_parameter_count(set_neurons(conditions, LORA_MATCHED_SET, control_seed), adapter)
            rows.append({"neuron_set": name, "neurons": None,
                         "trainable_parameters": lora_config_matching(adapter, matched)[1]})  # fmt: skip
            continue
        neurons = set_neurons(conditions, name, control_seed)
        rows.append({"neuron_set": name, "neurons": sum(len(chosen) for chosen in neurons.values()),
                     "trainable_parameters": trainable_parameter_count(neurons, adapter)})  # fmt: skip
    return pl.DataFrame(rows, schema={"neuron_set": pl.String, "neurons": pl.Int64, "trainable_parameters": pl.Int64})


# --- the workflow stage: the finetune rule --------------------------------------------------------------
TRAINING_LOG_SCHEMA = {"step": pl.Int64, "epoch": pl.Int64, "loss": pl.Float64, "sentences": pl.Int64,
                       "tokens": pl.Int64, "seconds": pl.Float64}  # fmt: skip


def training_log_table(result: TrainingResult, labels: Mapping[str, str]) -> pl.DataFrame:
    """The per-step log of ``result`` as a tidy table: labels, step, epoch, loss (mean NLL per predicted
    token of the step's sentences), sentences, tokens and the trained parameters. Each step's seconds go to
    the job's log, not the table: a result file is the same from run to run."""
    table = pl.DataFrame(result.log, schema=TRAINING_LOG_SCHEMA)
    log.info("training steps took %s s", ", ".join(f"{seconds:.3f}" for seconds in table["seconds"]))
    table = table.drop("seconds").with_columns(
        pl.lit(result.trainable_count, dtype=pl.Int64).alias("trainable_parameters")
    )
    return labelled(table, **labels)


def atomic_write_parquet(table: pl.DataFrame, path: Path) -> None:
    """``table`` at ``path`` through a temporary file in the same folder and a rename (never a partial file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        table.write_parquet(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def publish_delta(trained: Path, delta_path: Path, work_dir: Path) -> None:
    """Move the finished delta from the work folder to ``delta_path`` (one rename) and remove the folder.

    The work folder lies beside the outputs, not among them: Snakemake deletes a failed job's declared
    outputs, and the checkpoint there must survive for the rerun to resume.
    """
    delta_path = Path(delta_path)
    delta_path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(trained, delta_path)  # the same file system: atomic
    for leftover in Path(work_dir).glob(".*.tmp"):
        leftover.unlink()
    with contextlib.suppress(OSError):  # not empty: someone put other files there; leave them
        Path(work_dir).rmdir()


def run_finetune(
    manifest: Path, conditions: Path, train_pairs: Path, neuron_set: str, settings: TrainingSettings, *,
    control_seed: int, delta_path: Path, log_path: Path, work_dir: Path, device: str, labels: Mapping[str, str],
    dtype: str = "auto",
) -> TrainingResult:  # fmt: skip
    """The ``finetune`` rule: train ``neuron_set`` on the L2 side of the training pairs.

    Writes ``log_path`` (the per-step log, ``training_log_table``) and then ``delta_path`` (the delta of
    the trained parameters, moved from ``work_dir``, where checkpoints are kept until the run ends).
    A rerun after a kill resumes from the last checkpoint in ``work_dir``.
    """
    if neuron_set not in TRAINED_SETS:
        raise ValueError(f"finetune: {neuron_set!r} is not a trained set (one of {', '.join(TRAINED_SETS)})")
    loaded = load_model(manifest, device, dtype=dtype)
    sentences = kept_pairs(train_pairs)["target_text"].to_list()
    trainable = trainable_of(loaded.adapter, pl.read_parquet(conditions), neuron_set, control_seed)
    log.info("fine-tuning %s on %d sentences: %d steps of %d", neuron_set, len(sentences), settings.steps,
             settings.batch_size)  # fmt: skip
    result = train(loaded, loaded.tokenizer, sentences, trainable, settings, work_dir)
    log.info("trained %d parameters; %s", result.trainable_count, "; ".join(result.notes) or "no checkpoint used")
    atomic_write_parquet(training_log_table(result, {**labels, "neuron_set": neuron_set}), log_path)
    publish_delta(result.delta_path, delta_path, work_dir)
    return result


# --- the workflow stage: the evaluate_finetuned rule ----------------------------------------------------
MEASURES_SCHEMA = {"measure": pl.String, "unit": pl.String, "unit_id": pl.String, "value": pl.Float64}


@dataclass(frozen=True)
class FinetuneEvaluation:
    """How a fine-tuned model is measured: sizes (``evaluation.finetune``) and the QA and batching settings
    the other analyses use (``evaluation.qa``, ``evaluation.states.knn_k``, ``runtime``)."""

    sentences: int  # held-out test pairs whose L2 and English sides the loss reads
    questions: int | None  # QA questions (None: every one the filter keeps)
    items: int | None  # multiple-choice items (None: all)
    qa_template: str
    qa_max_new_tokens: int
    qa_stop: str
    question_filter: str
    knn_k: int
    last_layer: str  # runtime.last_layer: how the alignment reads the last layer (normed or raw)
    batch_size: int
    loss_batch_size: int
    max_batch_tokens: int | None


@dataclass
class EvaluationInputs:
    """What one language's evaluation reads, whichever weights the model has.

    ``held_out`` maps the L2 and the pivot to the held-out sentences (the same pairs); ``pairs`` are the
    test pairs (id, pivot_text, target_text) whose English states [L, N, d_model] and activations
    [L, N, d_mlp] the base model's test dump holds.
    """

    language: str
    pivot: str
    held_out: Mapping[str, Sequence[str]]
    held_out_ids: Sequence[str]
    records: list[dict]
    items: list[dict]
    pairs: pl.DataFrame
    pivot_states: np.ndarray
    pivot_activations: np.ndarray


def measure_rows(measure: str, unit_ids: Sequence[str], values: Sequence[float] | np.ndarray) -> pl.DataFrame:
    """One measure's rows: measure, its unit, each unit's id and value ([n] values for n ids)."""
    return pl.DataFrame({"measure": measure, "unit": MEASURE_UNITS[measure], "unit_id": [str(u) for u in unit_ids],
                         "value": np.asarray(values, dtype=np.float64)}, schema=MEASURES_SCHEMA)  # fmt: skip


def loss_measures(loaded: LoadedModel, inputs: EvaluationInputs, settings: FinetuneEvaluation) -> list[pl.DataFrame]:
    """L2 and English next-token loss of the held-out sentences (``loss.losses_by_run``, the normal run)."""
    frames = []
    for measure, lang in (("l2_loss", inputs.language), ("english_loss", inputs.pivot)):
        losses = losses_by_run(loaded, inputs.held_out[lang], {NORMAL: NeuronEdit()},
                               batch_size=settings.loss_batch_size,
                               max_batch_tokens=settings.max_batch_tokens)  # fmt: skip
        frames.append(measure_rows(measure, inputs.held_out_ids, losses[NORMAL]))
    return frames


def qa_measures(loaded: LoadedModel, inputs: EvaluationInputs, settings: FinetuneEvaluation) -> pl.DataFrame:
    """MKQA F1 of each question's greedy answer, prompted and scored as ``qa.evaluate_qa`` does."""
    f1 = f1_by_run(loaded, inputs.records, inputs.language, {NORMAL: NeuronEdit()}, template=settings.qa_template,
                   max_new_tokens=settings.qa_max_new_tokens, stop=settings.qa_stop,
                   max_batch_tokens=settings.max_batch_tokens)[NORMAL]  # fmt: skip
    ids = [str(record.get("example_id", index)) for index, record in enumerate(inputs.records)]
    return measure_rows("qa_f1", ids, f1)


def choice_measures(loaded: LoadedModel, inputs: EvaluationInputs, settings: FinetuneEvaluation) -> pl.DataFrame:
    """Accuracy on each item of the built-in multiple-choice task (``choices``: log-likelihood, as the harness)."""
    scores = accuracy_by_run(loaded, inputs.items, {NORMAL: NeuronEdit()}, batch_size=settings.batch_size,
                             max_batch_tokens=settings.max_batch_tokens)[NORMAL]  # fmt: skip
    return measure_rows("choice_accuracy", scores["item"].to_list(), scores["acc"].to_numpy())


def knn_measures(loaded: LoadedModel, inputs: EvaluationInputs, settings: FinetuneEvaluation) -> list[pl.DataFrame]:
    """Each test pair's mutual k-NN share (first k, mean over layers; ``states.alignment_of``) of the model's
    L2 states with the base model's English states (``knn_share``) and with its own (``knn_share_own``).

    Training moves the English states too; the first measure keeps the English space of the base model
    as a fixed reference, the second is the trained model's own alignment.
    """
    check_knn_ks([settings.knn_k], inputs.pairs.height)
    states = {side: states_by_run(loaded, inputs.pairs[column].to_list(), {NORMAL: NeuronEdit()},
                                  batch_size=settings.batch_size, max_batch_tokens=settings.max_batch_tokens,
                                  pivot_activations=inputs.pivot_activations,
                                  last_layer=settings.last_layer)[NORMAL]
              for side, column in (("target", "target_text"), ("pivot", "pivot_text"))}  # fmt: skip
    ids = inputs.pairs["id"].to_list()
    frames = []
    for measure, pivot_states in (("knn_share", inputs.pivot_states), ("knn_share_own", states["pivot"].layer_output)):
        neighbours = [nearest_neighbours(layer, settings.knn_k) for layer in pivot_states]
        _, per_pair = alignment_of(neighbours, pivot_states, states["target"], [settings.knn_k])
        frames.append(measure_rows(measure, ids, per_pair["knn_share"]))
    return frames


def evaluate_model(loaded: LoadedModel, inputs: EvaluationInputs, settings: FinetuneEvaluation) -> pl.DataFrame:
    """Every measure of ``MEASURE_UNITS`` of the model as it is: one row per measure and unit."""
    return pl.concat([
        *loss_measures(loaded, inputs, settings),
        qa_measures(loaded, inputs, settings),
        choice_measures(loaded, inputs, settings),
        *knn_measures(loaded, inputs, settings),
    ])  # fmt: skip


def evaluation_inputs(
    lang: str, pivot: str, test_pairs: Path, test_dump: Path, qa_source: dict, task_file: Path,
    settings: FinetuneEvaluation,
) -> EvaluationInputs:  # fmt: skip
    """Read what ``evaluate_model`` needs from the workflow's files (the test dump's English side)."""
    pairs = kept_pairs(test_pairs)
    dump = Dump(Path(test_dump) / PIVOT_SIDE)
    pivot_states = dump.layer_states(settings.last_layer)
    if pivot_states.shape[1] != pairs.height:
        raise ValueError(f"{dump.directory}: {pivot_states.shape[1]} English rows but {pairs.height} test pairs")
    held = pairs.head(settings.sentences)
    return EvaluationInputs(
        language=lang, pivot=pivot,
        held_out={lang: held["target_text"].to_list(), pivot: held["pivot_text"].to_list()},
        held_out_ids=held["id"].to_list(),
        records=load_qa(qa_source, [lang], settings.questions, question_filter=settings.question_filter),
        items=read_items(task_file, settings.items),
        pairs=pairs.select("id", "pivot_text", "target_text"),
        pivot_states=pivot_states, pivot_activations=dump.all_layers("neuron_activations"),
    )  # fmt: skip


def delta_parameter_count(path: Path) -> int:
    """Trained parameters a delta file holds: its floating-point tensors (neuron indices are integers)."""
    with safe_open(str(path), framework="pt") as handle:
        slices = [handle.get_slice(key) for key in handle.keys()]
        return sum(math.prod(part.get_shape()) for part in slices if part.get_dtype().startswith(("F", "BF")))


def run_finetuned_evaluation(
    manifest: Path, delta: Path | None, test_pairs: Path, test_dump: Path, qa_source: dict, task_file: Path,
    settings: FinetuneEvaluation, *, pivot: str, device: str, labels: Mapping[str, str], dtype: str = "auto",
) -> pl.DataFrame:  # fmt: skip
    """The ``evaluate_finetuned`` rule: the base model with ``delta`` added (None: the base model itself),
    measured on one language. One row per measure and unit; columns: the labels (model, language,
    neuron_set), measure, unit (sentence, question, item or pair), unit_id, value and trainable_parameters
    (the delta's; 0 for the base model)."""
    loaded = load_model(manifest, device, dtype=dtype)
    if delta is not None:
        model = apply_delta(loaded.model, Path(delta))  # LoRA's merge hands back the unwrapped model
        loaded = LoadedModel(model, loaded.tokenizer, adapter_for(model))
    inputs = evaluation_inputs(labels["language"], pivot, test_pairs, test_dump, qa_source, task_file, settings)
    table = evaluate_model(loaded, inputs, settings)
    count = 0 if delta is None else delta_parameter_count(Path(delta))
    return labelled(table.with_columns(pl.lit(count, dtype=pl.Int64).alias("trainable_parameters")), **labels)
