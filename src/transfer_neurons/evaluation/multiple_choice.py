"""The built-in multiple-choice task: the built-in QA questions with their gold answer and three wrong ones.

For each question and language: the gold answer's text, and three distractors drawn (seeded) from
the answers of other questions of the same answer type in the same language (an entity for an
entity, a number for a number), or of any type where a type has too few. A distractor is kept only
if it is wrong for the question: its MKQA F1 against every gold text and alias of the question is
below ``MAX_DISTRACTOR_F1`` (so it shares at most a minority of tokens with any right answer), and
no two choices are the same text. lm-evaluation-harness scores it by the log-likelihood of each
choice after the question (``data/lm_eval/tn_mc_{lang}.yaml``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from transfer_neurons.data.languages import language
from transfer_neurons.data.qa import answers_of, gold_texts, question_of
from transfer_neurons.evaluation.mkqa_scoring import mkqa_f1

N_CHOICES = 4
MAX_DISTRACTOR_F1 = 0.5
TASK_PREFIX = "tn_mc"
MC_PROMPT = "Q: {question}\nA:"  # the context of every choice (the task's doc_to_text)
CHOICE_DELIMITER = " "  # between context and choice (the harness's default target_delimiter)


def is_wrong_for(candidate: str, golds: list[str], lang: str) -> bool:
    """Whether ``candidate`` is far from every gold text of a question (MKQA F1 below the bar)."""
    mkqa_key = language(lang).mkqa_key
    return all(mkqa_f1(candidate, gold, mkqa_key) < MAX_DISTRACTOR_F1 for gold in golds)


def answer_type(record: dict, lang: str) -> str:
    return answers_of(record, lang)[0].get("type", "")


def multiple_choice_items(records: list[dict], lang: str, seed: int = 0) -> list[dict]:
    """One item per record: ``question``, ``choices`` (gold among three distractors, shuffled) and
    ``answer`` (the gold's index), with the record's id and where the item came from."""
    rng = np.random.default_rng([seed, sum(map(ord, lang))])
    answer_texts = [answers_of(record, lang)[0]["text"] for record in records]
    items = []
    for index, record in enumerate(records):
        golds = gold_texts(answers_of(record, lang))
        gold = answer_texts[index]
        this_type = answer_type(record, lang)
        same_type = [i for i, other in enumerate(records) if i != index and answer_type(other, lang) == this_type]
        others = same_type if len(same_type) >= 3 * (N_CHOICES - 1) else [i for i in range(len(records)) if i != index]
        distractors: list[str] = []
        for candidate in (answer_texts[i] for i in rng.permutation(others)):
            if candidate not in distractors and candidate != gold and is_wrong_for(candidate, golds, lang):
                distractors.append(candidate)
            if len(distractors) == N_CHOICES - 1:
                break
        if len(distractors) < N_CHOICES - 1:
            raise ValueError(f"question {record.get('example_id')} ({lang}): fewer than {N_CHOICES - 1} wrong answers")
        choices = [gold, *distractors]
        order = rng.permutation(N_CHOICES)
        items.append(
            {
                "id": str(record.get("example_id", index)),
                "question": question_of(record, lang),
                "choices": [choices[i] for i in order],
                "answer": int(np.flatnonzero(order == 0)[0]),
            }
        )
    return items


def task_yaml(lang: str, data_file: str) -> str:
    """The lm-evaluation-harness task definition of one language's items."""
    return f"""# Built-in multiple-choice task in {language(lang).name}: the built-in QA questions, each with its
# gold answer and three wrong answers of the same type (built by tools/build_lm_eval_tasks.py;
# see README.md here). Scored by the log-likelihood of each choice after the question.
task: {TASK_PREFIX}_{lang}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data_file}
test_split: test
output_type: multiple_choice
doc_to_text: {json.dumps(MC_PROMPT.replace("{question}", "{{question}}"))}
doc_to_choice: choices
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def write_task(records: list[dict], lang: str, directory: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write ``{TASK_PREFIX}_{lang}.jsonl`` and ``.yaml`` into ``directory``; the YAML names the data file
    by its path from the run directory (``directory`` as given, relative or not)."""
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / f"{TASK_PREFIX}_{lang}.jsonl"
    lines = [json.dumps(item, ensure_ascii=False) for item in multiple_choice_items(records, lang, seed)]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    definition = directory / f"{TASK_PREFIX}_{lang}.yaml"
    definition.write_text(task_yaml(lang, data.as_posix()), encoding="utf-8")
    return data, definition
