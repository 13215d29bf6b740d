"""Case 3: what batching buys, for forward passes and for QA generation.

Forward passes (the decoder stack, as the workflow reads states, in its length-sorted
batches): sentences per second at each batch size, over mixed-language built-in sentences,
and against the limit, the decoder's matmul FLOPs over the time as a share of the speed
probe's matmul rate (best of a probe before and after). Generation: greedy answers to
built-in MKQA questions, batch 1 against the configured batch. Batch-1 rates are measured
over fewer inputs (a rate does not need the same count, and batch-1 runs are the slow ones).
"""

from __future__ import annotations

from benchmarks.forward import accepts_logits_to_keep, decoder_flops_per_token, greedy_answers, plain_forward
from benchmarks.inputs import Bench, qa_prompts, sentence_pool, token_counts
from benchmarks.machine import matmul_gflops
from benchmarks.timing import Timing, time_interleaved, time_repeated


def rate(count: int, timing: Timing) -> dict:
    """Inputs per second: at the median time, and the slowest and fastest run."""
    return {"median": count / timing.median, "minimum": count / timing.maximum, "maximum": count / timing.minimum}


def forward_throughput(bench: Bench) -> dict:
    settings = bench.settings
    pool = sentence_pool()
    probes = [matmul_gflops()]
    rows = {}
    for batch_size in settings.throughput_batch_sizes:
        count = settings.throughput_batch1_sentences if batch_size == 1 else settings.throughput_sentences
        sentences = pool[:count]
        repeats = settings.repeats_slow if batch_size == 1 else settings.repeats_fast
        timing, _ = time_repeated(
            lambda sentences=sentences, batch_size=batch_size: plain_forward(
                bench.model, bench.tokenizer, sentences, batch_size, max_batch_tokens=settings.max_batch_tokens
            ),
            repeats,
        )
        padded = token_counts(bench.tokenizer, sentences, batch_size, settings.max_batch_tokens)["padded"] * count
        rows[str(batch_size)] = {
            "sentences": count,
            "timing": timing,
            "sentences_per_s": rate(count, timing),
            "gflop": decoder_flops_per_token(bench.model) * padded / 1e9,
        }
    probes.append(matmul_gflops())
    for row in rows.values():
        row["share_of_probe"] = row["gflop"] / row["timing"].median / max(probes)
    return {"batch_sizes": rows, "probe_gflops": max(probes)}


def logits_cost(bench: Bench) -> dict:
    """Forward passes with every position's logits, the last position's only, and none, at the configured batch.

    The workflow's state readers run the decoder only (no logits); this measures what that saves
    against a plain ``model(**inputs)`` call.
    """
    settings = bench.settings
    sentences = sentence_pool()[: settings.throughput_sentences]

    def forward(logits: str):
        return lambda: plain_forward(
            bench.model, bench.tokenizer, sentences, settings.batch_size, logits, settings.max_batch_tokens
        )

    modes = {"all_positions": "all", "decoder_only": "none"}
    if accepts_logits_to_keep(bench.model):
        modes["last_position"] = "last"
    timings, _ = time_interleaved({name: forward(mode) for name, mode in modes.items()}, settings.repeats_fast)
    return {
        "batch_size": settings.batch_size,
        "sentences": len(sentences),
        "timings": timings,
        "speedup": timings["all_positions"].median / timings["decoder_only"].median,
    }


def generation_throughput(bench: Bench) -> dict:
    settings = bench.settings
    prompts = qa_prompts(settings.qa_questions)
    rows, answers = {}, {}
    for batch_size, count in ((1, settings.qa_batch1_questions), (settings.qa_batch_size, settings.qa_questions)):
        timing, results = time_repeated(
            lambda batch_size=batch_size, count=count: greedy_answers(
                bench.model, bench.tokenizer, prompts[:count], batch_size, settings.qa_new_tokens
            ),
            settings.repeats_slow,
        )
        rows[str(batch_size)] = {"questions": count, "timing": timing, "questions_per_s": rate(count, timing)}
        answers[batch_size] = results[-1]
    shared = min(len(answer_list) for answer_list in answers.values())
    batched = answers[settings.qa_batch_size]
    same = sum(answers[1][index] == batched[index] for index in range(shared))
    return {
        "max_new_tokens": settings.qa_new_tokens,
        "batch_sizes": rows,
        "speedup": rows[str(settings.qa_batch_size)]["questions_per_s"]["median"]
        / rows["1"]["questions_per_s"]["median"],
        # Left padding must not change greedy answers; float32 ties can flip a few tokens.
        "identical_answers": {"same": same, "compared": shared},
    }


def run(bench: Bench) -> dict:
    return {
        "forward": forward_throughput(bench),
        "logits": logits_cost(bench),
        "generation": generation_throughput(bench),
    }
