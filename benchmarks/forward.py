"""Plain forward passes and greedy generation: the baselines the other measurements are held to."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch

from transfer_neurons.batching import batches, tokenize


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def accepts_logits_to_keep(model) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def plain_forward(
    model, tokenizer, sentences: Sequence[str], batch_size: int, max_tokens: int, last_logits_only: bool = False
) -> None:
    """Batched forward passes as the workflow tokenizes them: no hooks, nothing kept.

    ``last_logits_only`` computes the logits of the last position only (``logits_to_keep=1``),
    which is all that last-token work needs; by default every position's logits are computed,
    as a plain ``model(**inputs)`` call and the activation dump do.
    """
    device = next(model.parameters()).device
    extra = {"logits_to_keep": 1} if last_logits_only else {}
    for _, chunk in batches(list(sentences), batch_size):
        batch = tokenize(tokenizer, chunk, max_tokens).to(device)
        with torch.no_grad():
            model(**batch.model_inputs(model), **extra)
    synchronize(device)


def greedy_answers(
    model, tokenizer, prompts: Sequence[str], batch_size: int, max_new_tokens: int, max_tokens: int
) -> list[str]:
    """Greedy, left-padded generation of ``max_new_tokens`` per prompt; the decoded continuations."""
    device = next(model.parameters()).device
    answers = []
    for _, chunk in batches(list(prompts), batch_size):
        batch = tokenize(tokenizer, chunk, max_tokens).to(device)
        with torch.no_grad():
            generated = model.generate(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        answers.extend(tokenizer.batch_decode(generated[:, batch.input_ids.shape[1] :], skip_special_tokens=True))
    return answers
