"""Write the built-in multiple-choice task of every language to data/lm_eval/ (run from the repository root).

    python tools/build_lm_eval_tasks.py

The files are committed; tests/test_harness.py checks that they equal what this script writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from transfer_neurons.data.languages import LANGUAGES
from transfer_neurons.data.qa import load_qa
from transfer_neurons.evaluation.multiple_choice import write_task

QA_SET = Path("data/qa/builtin_mkqa.jsonl")
TASK_DIR = Path("data/lm_eval")
BUILTIN_LANGUAGES = ["en", "ja", "nl", "ko", "it", "zh", "de", "es", "ru", "ar", "hi", "th", "vi"]


def main() -> int:
    records = load_qa({"path": str(QA_SET)}, BUILTIN_LANGUAGES)
    for lang in BUILTIN_LANGUAGES:
        assert lang in LANGUAGES
        data, definition = write_task(records, lang, TASK_DIR)
        print(f"wrote {data} and {definition}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
