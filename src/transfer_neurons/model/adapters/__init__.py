"""Architecture adapters, one module per family, registered by transformers class name."""

from __future__ import annotations

from torch import nn

from transfer_neurons.model.adapters.base import FamilyAdapter, ModelFacts, effective_activations
from transfer_neurons.model.adapters.bloom import BloomAdapter
from transfer_neurons.model.adapters.cohere import CohereAdapter
from transfer_neurons.model.adapters.gemma import GemmaAdapter
from transfer_neurons.model.adapters.gpt_neox import GPTNeoXAdapter
from transfer_neurons.model.adapters.llama import LlamaAdapter
from transfer_neurons.registry import Registry, UnknownEntryError


class UnsupportedArchitectureError(UnknownEntryError):
    """The model's class has no adapter."""


# One row per transformers architecture name; a new family is a new module and one row here.
SUPPORTED_ARCHITECTURES: Registry[type[FamilyAdapter]] = Registry("architecture", UnsupportedArchitectureError)
for _architecture, _adapter in (
    ("LlamaForCausalLM", LlamaAdapter),
    ("MistralForCausalLM", LlamaAdapter),
    ("Qwen2ForCausalLM", LlamaAdapter),
    ("Gemma2ForCausalLM", GemmaAdapter),
    ("Gemma3ForCausalLM", GemmaAdapter),
    ("CohereForCausalLM", CohereAdapter),
    ("BloomForCausalLM", BloomAdapter),
    ("GPTNeoXForCausalLM", GPTNeoXAdapter),
):
    SUPPORTED_ARCHITECTURES.register(_adapter, name=_architecture)


def adapter_for(model: nn.Module) -> FamilyAdapter:
    """Return the adapter for ``model``, or fail naming the supported architectures."""
    return SUPPORTED_ARCHITECTURES[type(model).__name__](model)


__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "FamilyAdapter",
    "ModelFacts",
    "adapter_for",
    "effective_activations",
    "UnsupportedArchitectureError",
]
