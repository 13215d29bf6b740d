"""Left-padded batches whose results do not depend on the padding.

All forward passes pad on the left so that the last real token of every row sits at
position -1. Position ids are derived from the attention mask so that a padded row sees
the same positions as it would alone.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from transformers import Cache, PreTrainedModel, PreTrainedTokenizerBase
    from transformers.modeling_outputs import BaseModelOutputWithPast

Item = TypeVar("Item")
Stacked = TypeVar("Stacked", np.ndarray, torch.Tensor)


@dataclass
class TokenizedBatch:
    input_ids: torch.Tensor  # [batch, pos]
    attention_mask: torch.Tensor  # [batch, pos]

    def model_inputs(self, model: nn.Module) -> dict[str, torch.Tensor]:
        inputs = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if accepts_position_ids(model):
            inputs["position_ids"] = position_ids_from_mask(self.attention_mask)
        return inputs

    def to(self, device: torch.device) -> TokenizedBatch:
        return TokenizedBatch(self.input_ids.to(device), self.attention_mask.to(device))


def decoder_forward(model: PreTrainedModel, batch: TokenizedBatch, **options: Any) -> BaseModelOutputWithPast:
    """Forward pass of the decoder stack only (``model.base_model``): hidden states, no logits.

    State readers never use logits, and the output projection onto the vocabulary is the
    single largest matmul of small multilingual models (Gemma 3 270M: 262k x 640 per token).
    """
    decoder = model.base_model
    return decoder(**batch.model_inputs(decoder), **options)


def prefix_cache(model: PreTrainedModel, batch: TokenizedBatch) -> Cache:
    """Keys and values of every token but the last, from the decoder stack (no logits).

    Positions follow the mask as ``generate()`` numbers left-padded rows, so the cache fits a
    next step on the last token: ``last_token_forward`` or ``generate(cache=...)``.
    """
    prefix = TokenizedBatch(batch.input_ids[:, :-1], batch.attention_mask[:, :-1])
    cache = decoder_forward(model, prefix, use_cache=True).cache
    if cache is None:  # without it, a last-token pass would silently see no prefix
        raise RuntimeError(f"{type(model).__name__} returned no cache although use_cache=True")
    return cache


def last_token_forward(
    model: PreTrainedModel, batch: TokenizedBatch, cache: Cache, **options: Any
) -> BaseModelOutputWithPast:
    """The decoder stack on each row's last token only, continuing from the prefix's ``cache``."""
    decoder = model.base_model
    inputs = {"input_ids": batch.input_ids[:, -1:], "attention_mask": batch.attention_mask}
    if accepts_position_ids(decoder):
        inputs["position_ids"] = position_ids_from_mask(batch.attention_mask)[:, -1:]
    return decoder(**inputs, cache=cache, use_cache=True, **options)


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """[batch, pos] positions counting only real tokens (pads get 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def accepts_position_ids(model: nn.Module) -> bool:
    return "position_ids" in inspect.signature(model.forward).parameters


def ensure_padding(tokenizer: PreTrainedTokenizerBase) -> None:
    """Left padding with a pad token (the EOS token where the tokenizer has none)."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError("the tokenizer has neither a pad nor an eos token; set one in the model directory")
        tokenizer.pad_token = tokenizer.eos_token


def tokenize(tokenizer: PreTrainedTokenizerBase, sentences: Sequence[str]) -> TokenizedBatch:
    """Tokenize whole sentences and pad them on the left (nothing is ever cut)."""
    ensure_padding(tokenizer)
    encoded = tokenizer(list(sentences), add_special_tokens=True, padding=True, return_tensors="pt")
    return TokenizedBatch(encoded["input_ids"], encoded["attention_mask"])


def token_lengths(tokenizer: PreTrainedTokenizerBase, sentences: Sequence[str]) -> list[int]:
    """Tokens per sentence, special tokens included, as ``tokenize`` encodes them."""
    return [len(ids) for ids in tokenizer(list(sentences), add_special_tokens=True)["input_ids"]]


def length_sorted_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int | None) -> list[list[int]]:
    """Sentence indices in batches of similar length, shortest first.

    A batch holds at most ``batch_size`` sentences and, once padded to its longest sentence, at
    most ``max_batch_tokens`` tokens (a longer sentence goes alone), so that memory stays flat
    however long the corpus's sentences are. Batches of neighbours in length pad little: on the
    built-in corpus, batches in corpus order are a third padding.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    result: list[list[int]] = []
    current: list[int] = []
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        # Sorted ascending, so the sentence being added is the batch's longest.
        padded = (len(current) + 1) * lengths[index]
        if current and (len(current) == batch_size or (max_batch_tokens is not None and padded > max_batch_tokens)):
            result.append(current)
            current = []
        current.append(index)
    if current:
        result.append(current)
    return result


def batches(items: Sequence[Item], batch_size: int) -> Iterator[tuple[int, Sequence[Item]]]:
    """Yield ``(start_index, chunk)`` pairs."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    for start in range(0, len(items), batch_size):
        yield start, items[start : start + batch_size]


# --- conditions as rows: K copies of a batch in one pass -------------------------------------------
def stacked_rows(batch: TokenizedBatch, copies: int) -> TokenizedBatch:
    """``copies`` copies of every row, each row's copies together: row r of copy k is row r * copies + k.

    The layout of a cache's ``batch_repeat_interleave`` (as beam search lays rows out); with one
    ``model.hooks.NeuronEdit`` per copy, each condition's edits reach its own rows.
    """
    return TokenizedBatch(
        batch.input_ids.repeat_interleave(copies, dim=0), batch.attention_mask.repeat_interleave(copies, dim=0)
    )


def copy_rows(stacked: Stacked, copy: int, copies: int, dim: int = 0) -> Stacked:
    """The rows of copy ``copy`` of a stacked tensor or array (``stacked_rows``' layout), along ``dim``."""
    index = [slice(None)] * stacked.ndim
    index[dim] = slice(copy, None, copies)
    return stacked[tuple(index)]


def copies_per_pass(rows: int, width: int, copies: int, max_batch_tokens: int | None) -> int:
    """How many copies of a batch of ``rows`` x ``width`` tokens one pass takes: together at most
    ``max_batch_tokens`` tokens (at least one copy, however long the batch)."""
    if max_batch_tokens is None:
        return max(copies, 1)
    return max(1, min(copies, max_batch_tokens // max(rows * width, 1)))


def pass_groups(names: Sequence[str], per_pass: int) -> list[list[str]]:
    """``names`` in consecutive groups of at most ``per_pass``: the conditions that share each pass."""
    return [list(names[start : start + per_pass]) for start in range(0, len(names), max(per_pass, 1))]
