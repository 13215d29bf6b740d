"""The shared vocabulary for where the workflow reads and writes inside a decoder layer.

Every family adapter answers the same four questions for each decoder layer ``l``:

* ``layer_output``       [batch, pos, d_model]  the raw residual stream after the layer
* ``mlp_contribution``   [batch, pos, d_model]  what the MLP adds to the residual stream
* ``neuron_activations`` [batch, pos, d_mlp]    the input of the down projection
* ``write_vectors``      [d_mlp, d_model]       what one unit of neuron ``i`` writes
* ``activation_function`` output [batch, pos, d_mlp]  (the gate's, for gated MLPs) > 0: a neuron is
  active on a token, as LAPE counts it

The residual stream before the MLP is always ``layer_output - mlp_contribution``; this
definition holds for sequential and parallel blocks alike, so the maths downstream never
branches on the family. The identity every adapter satisfies (tested per family) is::

    mlp_contribution = write_scale * (neuron_activations @ write_vectors) + mlp_bias

``write_scale`` is 1 except where a norm follows the MLP (Gemma), where it is the
per-token ``1 / rms(m)`` of the un-normed MLP output ``m``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class ModelFacts:
    """Model facts the maths needs, checked on creation."""

    family: str
    n_layers: int
    d_model: int
    d_mlp: int
    gated_mlp: bool
    parallel_residual: bool
    norm_after_mlp: bool

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "d_mlp"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ModelFacts.{name} must be positive, got {getattr(self, name)}")

    @property
    def n_neurons(self) -> int:
        return self.n_layers * self.d_mlp


class FamilyAdapter:
    """Base adapter: subclasses name the native module paths of one family."""

    family: str = ""
    gated_mlp: bool = True
    norm_after_mlp: bool = False
    # Typed Any: the native submodules and config fields the methods below read are attributes set at run time.
    model: Any
    config: Any

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.config = model.config
        self.facts = ModelFacts(
            family=self.family,
            n_layers=len(self.layers()),
            d_model=self.config.hidden_size,
            d_mlp=self.down_projection(0).in_features,
            gated_mlp=self.gated_mlp,
            parallel_residual=self.parallel_residual(),
            norm_after_mlp=self.norm_after_mlp,
        )

    # --- native module paths (override per family) ---------------------------------
    def layers(self) -> Any:
        """The decoder layers (an ``nn.ModuleList``; typed Any, as its items' submodules are native attributes)."""
        return self.model.model.layers

    def down_projection(self, layer_index: int) -> nn.Linear:
        """The linear map whose input is the neuron activations."""
        return self.layers()[layer_index].mlp.down_proj

    def contribution_module(self, layer_index: int) -> nn.Module:
        """The module whose output is exactly what the MLP adds to the residual stream."""
        return self.layers()[layer_index].mlp

    def activation_function(self, layer_index: int) -> nn.Module:
        """The MLP's activation function module (on the gate, for gated MLPs): what LAPE counts as active."""
        return self.layers()[layer_index].mlp.act_fn

    def parallel_residual(self) -> bool:
        return False

    def named_input_projections(self, layer_index: int) -> dict[str, nn.Linear]:
        """The linear maps whose output row i feeds neuron i, by role: ``gate`` and ``up`` for gated MLPs.

        Each weight is [d_mlp, d_model]; the roles' order is ``input_projections``'s.
        """
        mlp = self.layers()[layer_index].mlp
        return {"gate": mlp.gate_proj, "up": mlp.up_proj}

    def input_projections(self, layer_index: int) -> list[nn.Linear]:
        """The linear maps whose output row i feeds neuron i (gate and up for gated MLPs)."""
        return list(self.named_input_projections(layer_index).values())

    def mlp_module_names(self, layer_index: int) -> dict[str, str]:
        """Native module paths of the layer's MLP linear maps by role: the input roles, then ``down``.

        e.g. ``{"gate": "model.layers.0.mlp.gate_proj", "up": ..., "down": "model.layers.0.mlp.down_proj"}``;
        found by identity in ``model.named_modules()``, so they are the names peft's ``target_modules`` match.
        """
        modules = {**self.named_input_projections(layer_index), "down": self.down_projection(layer_index)}
        paths = {id(module): name for name, module in self.model.named_modules()}
        return {role: paths[id(module)] for role, module in modules.items()}

    def final_norm(self) -> nn.Module:
        """The norm between the last decoder layer's raw output and the unembedding."""
        return self.model.model.norm

    def unembedding(self) -> nn.Linear:
        """The output projection onto the vocabulary (before any logit scale or soft-capping)."""
        return self.model.lm_head

    # --- derived quantities ---------------------------------------------------------
    def write_vectors(self, layer_index: int) -> torch.Tensor:
        """[d_mlp, d_model] float32: row i is what one unit of neuron i's activation writes."""
        # A transposed view, not a copy: scoring multiplies by its transpose, the weight as stored.
        return self.down_projection(layer_index).weight.detach().float().T

    def mlp_bias(self, layer_index: int) -> torch.Tensor | None:
        bias = self.down_projection(layer_index).bias
        return None if bias is None else bias.detach().float()

    def write_scale(self, layer_index: int, contribution_input: torch.Tensor) -> torch.Tensor | None:
        """Per-token factor on the neuron writes, given the contribution module's input.

        ``None`` means 1 (no norm after the MLP).
        """
        return None

    def first_positional(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
        """The contribution module's main input (hidden states), wherever it was passed."""
        if args:
            return args[0]
        if "hidden_states" in kwargs:
            return kwargs["hidden_states"]
        return kwargs["x"]


Values = TypeVar("Values", np.ndarray, torch.Tensor)


def effective_activations(neuron_activations: Values, write_scale: Values) -> Values:
    """Activations times the per-token write scale: the coefficients of the write vectors.

    ``neuron_activations`` [..., d_mlp] and ``write_scale`` [...] (numpy or torch) -> [..., d_mlp].
    """
    return neuron_activations * write_scale[..., None]
