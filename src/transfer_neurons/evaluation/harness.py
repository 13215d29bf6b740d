"""Any lm-evaluation-harness task under an intervention condition.

The model is loaded once through the workflow's own loading (hub, local, GGUF, the embedded
default) and handed to lm-evaluation-harness as ``HFLM(pretrained=<model>, tokenizer=...)``;
``InterventionHFLM`` scales the condition's neurons (the input of each layer's down projection)
inside its forward passes through a ``model.hooks.HookSession``, with the position vocabulary of
``model.hooks``: a request's prompt is its context, so

* ``prompt`` (the default, as in the paper's MMLU-ProX runs): every context token; for generation,
  every token of the prompt pass;
* ``prompt_last``: the last context token only;
* ``last``: the last context token and every token after it: for log-likelihood requests the
  positions that predict the answer's tokens, for generation each new token;
* ``all``: every position of every pass, which is the same as zeroing the neurons' weights; on
  log-likelihood tasks it is what the paper's harness hooks do (they scale every position of any
  pass longer than one token).

lm-evaluation-harness right-pads log-likelihood batches and says nothing inside the forward pass
about where each row's context ends, so ``InterventionHFLM`` reads the context lengths of each
batch as the harness's ``Collator`` hands it out (lm-eval is pinned; tests compare the result
with a direct per-row computation). It also computes the vocabulary projection only at the
positions whose log-likelihoods the harness reads. Each condition runs its own passes: stacking
conditions as rows would need the harness's private request batching.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import torch

from transfer_neurons.data.tidy import labelled
from transfer_neurons.evaluation.conditions import condition_info, condition_neurons
from transfer_neurons.model.hooks import HookSession, NeuronEdit
from transfer_neurons.model.loading import LoadedModel, load_model

if TYPE_CHECKING:
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

log = logging.getLogger(__name__)


def _harness() -> tuple[Any, Any]:
    """lm-evaluation-harness's modules, imported on use (the import takes seconds)."""
    import lm_eval
    import lm_eval.models.huggingface as huggingface

    return lm_eval, huggingface


def intervention_lm(loaded: LoadedModel, neurons: Mapping[int, Sequence[int]], *, factor: float, positions: str,
                    batch_size: int) -> HFLM:  # fmt: skip
    """An lm-evaluation-harness model that runs ``loaded`` with ``neurons`` scaled by ``factor``."""
    _, huggingface = _harness()
    edit = NeuronEdit({int(layer): list(chosen) for layer, chosen in neurons.items() if chosen}, factor, positions)

    class InterventionHFLM(huggingface.HFLM):  # type: ignore[name-defined]  # a base class imported on use
        def __init__(self) -> None:
            super().__init__(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=batch_size)
            self.context_lengths: list[tuple[int, int]] | None = None  # (context tokens, input length) per row

        # --- log-likelihood requests: one forward pass of context + continuation[:-1] per row ---
        def _loglikelihood_tokens(
            self, requests: list[tuple[Any, list[int], list[int]]], disable_tqdm: bool = False,
            override_bs: int | None = None,
        ) -> list[tuple[float, bool]]:  # fmt: skip
            lm = self
            collator = huggingface.Collator

            class RecordingCollator(collator):  # type: ignore[misc, valid-type]  # a base class imported on use
                def get_batched(self, n: int = 1, batch_fn: Callable[..., Any] | None = None) -> Iterator[list[Any]]:
                    for chunk in super().get_batched(n=n, batch_fn=batch_fn):
                        lm.context_lengths = [
                            lm.row_lengths(context, continuation) for _, context, continuation in chunk
                        ]
                        yield chunk

            # Requests whose context + continuation[:-1] match share one forward pass (the harness's
            # logits cache); if they split that sequence at different places, a position-dependent
            # intervention cannot be right for all of them, so each is scored alone.
            splits: dict[tuple, set[int]] = {}
            for _, context, continuation in requests:
                splits.setdefault(tuple(context + continuation[:-1]), set()).add(len(context))
            saved_cache = self.logits_cache
            self.logits_cache: bool = saved_cache and all(len(split) == 1 for split in splits.values())
            huggingface.Collator = RecordingCollator
            try:
                return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
            finally:
                huggingface.Collator = collator
                self.logits_cache = saved_cache
                self.context_lengths = None

        def row_lengths(self, context: list[int], continuation: list[int]) -> tuple[int, int]:
            """(context tokens, input tokens) of a request's row, as the harness truncates and shifts it."""
            length = len((context + continuation)[-(self.max_length + 1) :][:-1])
            return max(0, length - (len(continuation) - 1)), length

        def positions_read(self, length: int) -> int:
            """How many of the padded batch's last positions hold every row's continuation logits.

            The harness finds a row's continuation at ``input length - continuation length`` counted
            back from the end of what the model returns, so returning only the last k positions is
            enough when k reaches back to the earliest continuation of the batch.
            """
            assert self.context_lengths is not None  # read inside a log-likelihood batch only
            return length - min(max(context - 1, 0) for context, _ in self.context_lengths)

        def _model_call(
            self, inps: torch.Tensor, attn_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None
        ) -> torch.Tensor:
            if self.context_lengths is None:  # not a log-likelihood batch (e.g. batch-size probing)
                return super()._model_call(inps, attn_mask=attn_mask, labels=labels)
            # Each right-padded row's prompt is its context.
            contexts = torch.tensor([context for context, _ in self.context_lengths])
            # Only the positions the harness reads are projected onto the vocabulary (and then taken
            # through its log-softmax): on a large vocabulary that is most of a pass's cost.
            with torch.no_grad(), HookSession(loaded.adapter) as session:
                session.edit_neurons([edit], prompt_length=contexts)
                return self.model(inps, logits_to_keep=self.positions_read(inps.shape[1])).logits

        # --- generation: one prompt pass (left-padded), then one token per pass ---------------------
        def _model_generate(
            self, context: torch.Tensor, max_length: int, stop: list[str], **generation_kwargs: Any
        ) -> torch.Tensor:
            with HookSession(loaded.adapter) as session:
                session.edit_neurons([edit])
                return super()._model_generate(context, max_length, stop, **generation_kwargs)

    return InterventionHFLM()


def task_manager(tasks: Sequence[str], include_path: str | None) -> TaskManager:
    """A task index of ``include_path``'s task YAMLs, and of the harness's own tasks only where
    ``tasks`` needs them (indexing every built-in task takes seconds)."""
    lm_eval, _ = _harness()
    from lm_eval.tasks import TaskManager

    local = TaskManager(include_path=include_path, include_defaults=False) if include_path else None
    if local is not None and all(task in local.all_tasks for task in tasks):
        return local
    return TaskManager(include_path=include_path)


def tidy_results(results: dict) -> pl.DataFrame:
    """One row per task, metric and filter of a ``simple_evaluate`` result, with its stderr."""
    rows = []
    for task, values in results["results"].items():
        for key, value in values.items():
            if "," not in key or key.split(",")[0].endswith("_stderr") or not isinstance(value, (int, float)):
                continue
            metric, filter_name = key.split(",", 1)
            stderr = values.get(f"{metric}_stderr,{filter_name}")
            rows.append({"task": task, "metric": metric, "filter": filter_name, "value": float(value),
                         "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
                         "n_samples": results.get("n-samples", {}).get(task, {}).get("effective")})  # fmt: skip
    return pl.DataFrame(rows, schema={"task": pl.String, "metric": pl.String, "filter": pl.String,
                                      "value": pl.Float64, "stderr": pl.Float64, "n_samples": pl.Int64})  # fmt: skip


def run_harness(
    manifest: Path, conditions: Path, outputs: Mapping[str, tuple[Path, Path]], tasks: Sequence[str], *,
    include_path: str | None, num_fewshot: int | None, limit: int | None, batch_size: int, factor: float,
    positions: str, bootstrap_iters: int, device: str, labels: dict,
    dtype: str = "auto",
) -> None:  # fmt: skip
    """The ``evaluate_harness`` rule: ``tasks`` under each condition of ``outputs``, which maps a condition
    to the paths of the harness's own results JSON and of its tidy table (one row per task, metric and
    filter). The model is loaded once for all of them."""
    table = pl.read_parquet(conditions)
    unknown = sorted(set(outputs) - set(table["condition"].to_list()))
    if unknown:
        raise ValueError(f"{conditions}: no condition {', '.join(map(repr, unknown))}")
    loaded = load_model(manifest, device, dtype=dtype)
    manager = task_manager(tasks, include_path)
    for condition, (results_path, table_path) in outputs.items():
        neurons = condition_neurons(table, condition)
        lm = intervention_lm(loaded, neurons, factor=factor, positions=positions, batch_size=batch_size)
        results = harness_results(lm, tasks, manager, num_fewshot=num_fewshot, limit=limit,
                                  bootstrap_iters=bootstrap_iters,
                                  model_args={**labels, "condition": condition, "positions": positions,
                                              "factor": factor})  # fmt: skip
        write_results_json(results, results_path)
        info = condition_info(table.filter(pl.col("condition") == condition))
        tidy = tidy_results(results).with_columns(pl.lit(condition).alias("condition"))
        labelled(tidy.join(info, on="condition", how="left"), **labels).write_parquet(table_path)


def harness_results(
    lm: HFLM, tasks: Sequence[str], manager: TaskManager, *, num_fewshot: int | None, limit: int | None,
    bootstrap_iters: int, model_args: Mapping[str, Any],
) -> dict:  # fmt: skip
    """``lm_eval.simple_evaluate`` of ``tasks`` with every seed fixed (the harness's own defaults are 0 and 1234)."""
    lm_eval, _ = _harness()
    return lm_eval.simple_evaluate(
        model=lm,
        tasks=list(tasks),
        task_manager=manager,
        num_fewshot=num_fewshot,
        limit=limit,
        bootstrap_iters=bootstrap_iters,
        random_seed=0,
        numpy_random_seed=0,
        torch_random_seed=0,
        fewshot_random_seed=0,
        model_args=model_args,
    )


# What the harness records of the run rather than of the results: the time, the machine and its packages,
# git state, and the model's absolute path. They go to the job's log, so that two runs of one commit
# write the same results file.
RUN_FACTS = ("date", "pretty_env_info", "git_hash", "upper_git_hash", "total_evaluation_time_seconds")
RUN_CONFIG_FACTS = ("model",)


def split_run_facts(results: dict) -> tuple[dict, dict]:
    """(``results`` without the run's own facts, those facts): ``RUN_FACTS`` at the top level and
    ``RUN_CONFIG_FACTS`` of its ``config``."""
    stable = {key: value for key, value in results.items() if key not in RUN_FACTS}
    facts = {key: results[key] for key in RUN_FACTS if key in results}
    if isinstance(results.get("config"), dict):
        stable["config"] = {key: value for key, value in results["config"].items() if key not in RUN_CONFIG_FACTS}
        facts["config"] = {key: results["config"][key] for key in RUN_CONFIG_FACTS if key in results["config"]}
    return stable, facts


def write_results_json(results: dict, path: Path) -> None:
    """The harness's results as JSON, without the run's own facts (logged instead)."""
    from lm_eval.utils import handle_non_serializable

    stable, facts = split_run_facts(results)
    log.info("%s: run facts %s", path, json.dumps(facts, default=handle_non_serializable)[:2000])
    Path(path).write_text(json.dumps(stable, indent=2, default=handle_non_serializable, ensure_ascii=False))
