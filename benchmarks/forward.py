"""Plain forward passes and greedy generation: the baselines the other measurements are held to."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch

from transfer_neurons.model.batching import batches, decoder_forward, length_sorted_batches, token_lengths, tokenize


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def accepts_logits_to_keep(model) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


LOGITS_MODES = ("all", "last", "none")


def plain_forward(
    model,
    tokenizer,
    sentences: Sequence[str],
    batch_size: int,
    logits: str = "none",
    max_batch_tokens: int | None = None,
) -> None:
    """Batched forward passes in the workflow's batches: no hooks, nothing kept.

    Batches are the ones the workflow's state readers make of the same sentences
    (``length_sorted_batches``, at most ``batch_size`` sentences and ``max_batch_tokens``
    padded tokens), so that the capture is the only difference from them.
    ``logits``: ``"none"`` runs the decoder stack only, as the workflow's state readers do
    (the strictest baseline for them); ``"last"`` adds the last position's logits
    (``logits_to_keep=1``); ``"all"`` is a plain ``model(**inputs)`` call, every position's
    logits, as scripts that read ``output_hidden_states`` compute.
    """
    if logits not in LOGITS_MODES:
        raise ValueError(f"logits must be one of {LOGITS_MODES}, got {logits!r}")
    device = next(model.parameters()).device
    for rows in length_sorted_batches(token_lengths(tokenizer, sentences), batch_size, max_batch_tokens):
        batch = tokenize(tokenizer, [sentences[row] for row in rows]).to(device)
        with torch.no_grad():
            if logits == "none":
                decoder_forward(model, batch)
            else:
                model(**batch.model_inputs(model), **({"logits_to_keep": 1} if logits == "last" else {}))
    synchronize(device)


def model_flops_per_token(model) -> float:
    """Matmul FLOPs per token of a whole forward pass: every weight matrix but the input embedding.

    A language-model head tied to the input embedding is not a separate parameter, so it is added back.
    """
    embedding = model.get_input_embeddings().weight
    output = model.get_output_embeddings()
    tied_head = output is not None and output.weight is embedding
    matmul_parameters = sum(p.numel() for p in model.parameters() if p is not embedding and p.dim() > 1)
    return 2.0 * (matmul_parameters + (embedding.numel() if tied_head else 0))


def decoder_flops_per_token(model) -> float:
    """Matmul FLOPs per token of the decoder stack alone (what ``plain_forward`` runs by default).

    Attention scores are left out: at the built-in corpus's ~15 tokens per sentence they are a few
    per mille of it.
    """
    embedding = model.get_input_embeddings().weight
    return 2.0 * sum(p.numel() for p in model.base_model.parameters() if p is not embedding and p.dim() > 1)


def greedy_answers(model, tokenizer, prompts: Sequence[str], batch_size: int, max_new_tokens: int) -> list[str]:
    """Greedy, left-padded generation of ``max_new_tokens`` per prompt; the decoded continuations."""
    device = next(model.parameters()).device
    answers = []
    for _, chunk in batches(list(prompts), batch_size):
        batch = tokenize(tokenizer, chunk).to(device)
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
