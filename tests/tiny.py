"""Tiny randomly initialised models of every supported family, built offline from config classes."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    BloomConfig,
    BloomForCausalLM,
    CohereConfig,
    CohereForCausalLM,
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

VOCAB_SIZE = 320
COMMON = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=4,
    num_attention_heads=4,
    max_position_embeddings=128,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)
GQA = dict(num_key_value_heads=2)

TINY_FAMILIES = {
    "llama": lambda: LlamaForCausalLM(LlamaConfig(**COMMON, **GQA)),
    "mistral": lambda: MistralForCausalLM(MistralConfig(**COMMON, **GQA)),
    "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(**COMMON, **GQA)),
    "gemma2": lambda: Gemma2ForCausalLM(Gemma2Config(**COMMON, **GQA, head_dim=8)),
    "gemma3": lambda: Gemma3ForCausalLM(Gemma3TextConfig(**COMMON, **GQA, head_dim=8)),
    "cohere": lambda: CohereForCausalLM(CohereConfig(**COMMON, **GQA)),
    "bloom": lambda: BloomForCausalLM(
        BloomConfig(
            vocab_size=VOCAB_SIZE,
            hidden_size=32,
            n_layer=4,
            n_head=4,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        )
    ),
    "gpt_neox": lambda: GPTNeoXForCausalLM(GPTNeoXConfig(**COMMON)),
}

TOKENIZER_TEXT = [
    "The cat sleeps on the sofa.",
    "Il gatto dorme sul divano.",
    "De kat slaapt op de bank.",
    "猫はソファで寝ています。",
    "고양이가 소파에서 자고 있어요.",
    "Where is the station?",
    "Dov'è la stazione?",
    "Waar is het station?",
    "駅はどこですか？",
    "역이 어디예요?",
]


def tiny_model(family: str, seed: int = 0) -> torch.nn.Module:
    """A random tiny model in eval mode; weights are perturbed away from identity norms."""
    torch.manual_seed(seed)
    model = TINY_FAMILIES[family]().eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name or "ln" in name:
                parameter.add_(0.1 * torch.randn_like(parameter))
            if name.endswith("bias"):
                parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on a few sentences of the five languages."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=["<pad>", "<bos>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(TOKENIZER_TEXT, trainer)
    from tokenizers.processors import TemplateProcessing

    backend.post_processor = TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")


def save_tiny_model(family: str, directory: Path, seed: int = 0) -> Path:
    """Write a tiny model and tokenizer as a local model directory."""
    model = tiny_model(family, seed)
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(directory)
    tiny_tokenizer().save_pretrained(directory)
    return directory
