"""Plain forward passes and greedy generation: the baselines the other measurements are held to."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch

from transfer_neurons.model.batching import batches, decoder_forward, tokenize


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def accepts_logits_to_keep(model) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


LOGITS_MODES = ("all", "last", "none")


def plain_forward(
    model, tokenizer, sentences: Sequence[str], batch_size: int, max_tokens: int, logits: str = "none"
) -> None:
    """Batched forward passes as the workflow tokenizes them: no hooks, nothing kept.

    ``logits``: ``"none"`` runs the decoder stack only, as the workflow's state readers do
    (the strictest baseline for them); ``"last"`` adds the last position's logits
    (``logits_to_keep=1``); ``"all"`` is a plain ``model(**inputs)`` call, every position's
    logits, as scripts that read ``output_hidden_states`` compute.
    """
    if logits not in LOGITS_MODES:
        raise ValueError(f"logits must be one of {LOGITS_MODES}, got {logits!r}")
    device = next(model.parameters()).device
    for _, chunk in batches(list(sentences), batch_size):
        batch = tokenize(tokenizer, chunk, max_tokens).to(device)
        with torch.no_grad():
            if logits == "none":
                decoder_forward(model, batch)
            else:
                model(**batch.model_inputs(model), **({"logits_to_keep": 1} if logits == "last" else {}))
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
