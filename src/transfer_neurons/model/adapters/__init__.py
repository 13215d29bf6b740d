"""Architecture adapters, one module per family, registered by transformers class name."""

from __future__ import annotations

from torch import nn

from transfer_neurons.model.adapters.base import FamilyAdapter, ModelFacts, effective_activations
from transfer_neurons.model.adapters.bloom import BloomAdapter
from transfer_neurons.model.adapters.cohere import CohereAdapter
from transfer_neurons.model.adapters.gemma import GemmaAdapter
from transfer_neurons.model.adapters.gpt_neox import GPTNeoXAdapter
from transfer_neurons.model.adapters.llama import LlamaAdapter

SUPPORTED_ARCHITECTURES: dict[str, type[FamilyAdapter]] = {
    "LlamaForCausalLM": LlamaAdapter,
    "MistralForCausalLM": LlamaAdapter,
    "Qwen2ForCausalLM": LlamaAdapter,
    "Gemma2ForCausalLM": GemmaAdapter,
    "Gemma3ForCausalLM": GemmaAdapter,
    "CohereForCausalLM": CohereAdapter,
    "BloomForCausalLM": BloomAdapter,
    "GPTNeoXForCausalLM": GPTNeoXAdapter,
}


class UnsupportedArchitectureError(ValueError):
    """The model's class has no adapter."""


def adapter_for(model: nn.Module) -> FamilyAdapter:
    """Return the adapter for ``model``, or fail naming the supported families."""
    name = type(model).__name__
    try:
        adapter_class = SUPPORTED_ARCHITECTURES[name]
    except KeyError:
        supported = ", ".join(sorted(SUPPORTED_ARCHITECTURES))
        raise UnsupportedArchitectureError(f"unsupported architecture {name!r}; supported: {supported}") from None
    return adapter_class(model)


__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "FamilyAdapter",
    "ModelFacts",
    "adapter_for",
    "effective_activations",
    "UnsupportedArchitectureError",
]
