"""Loading a model's tokenizer fast, and only where that is exact.

``AutoTokenizer.from_pretrained`` on Gemma 3's 262k-token ``tokenizer.json`` parses the file in
Python, rebuilds the tokenizer from its vocabulary and merges and deep-copies thousands of added
tokens: 2.8-4.5 s of every model job on the 2-core reference machine (6.5 s with two jobs side by
side). ``PreTrainedTokenizerFast(tokenizer_file=...)`` lets the Rust reader read the same file and
adds the special tokens of ``tokenizer_config.json``: 1.0-1.2 s. The two are not the same code, so
``prepare_model`` compares them once per model, on every text of the built-in data (data/: corpora,
QA set, multiple-choice tasks; 12,238 distinct texts, every one encoded alike for Gemma 3 270M) and
a fixed multi-script probe, and records in the manifest which one every job loads: ``fast`` where
every encoding agrees, ``auto`` otherwise.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

log = logging.getLogger(__name__)

AUTO, FAST = "auto", "fast"
SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token", "mask_token")
# Scripts and shapes every comparison covers, whatever the run's data: spaces, digits, punctuation,
# line breaks, Han, kana, Hangul, Cyrillic, Arabic, Devanagari, Thai, Vietnamese diacritics.
PROBE = (
    "The cat sleeps on the sofa.", "  two  spaces\tand a tab", "Q: Who wrote Max Havelaar?\nA:", "1969, 3.14 & 42%",
    "駅はどこですか？ 答え: ", "猫はソファで寝ています。", "고양이가 소파에서 자고 있어요.", "Где вокзал?",
    "أين المحطة؟", "स्टेशन कहाँ है?", "สถานีอยู่ที่ไหน", "Nhà ga ở đâu?", "Dov'è la stazione? Risposta: ",
)  # fmt: skip


def fast_tokenizer(directory: Path) -> PreTrainedTokenizerFast:
    """The Rust tokenizer of ``directory/tokenizer.json`` wrapped with the special tokens of its
    ``tokenizer_config.json``."""
    from transformers import PreTrainedTokenizerFast

    directory = Path(directory)
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    special = {key: _token_text(config[key]) for key in SPECIAL_TOKEN_KEYS if config.get(key)}
    # A file, not a Tokenizer object: transformers deep-copies an object it is given (another 1.3 s
    # for Gemma's 262k tokens), and reads a file with the Rust reader directly.
    return PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"), **special)


def _token_text(token: str | dict[str, Any]) -> str:
    """A special token as tokenizer_config.json writes it: a string, or an AddedToken's dict."""
    return token["content"] if isinstance(token, dict) else token


def differing_lines(
    reference: PreTrainedTokenizerBase, candidate: PreTrainedTokenizerBase, lines: Iterable[str]
) -> list[str]:
    """The lines whose token ids (special tokens included) differ between two tokenizers."""
    return [line for line in lines if reference(line)["input_ids"] != candidate(line)["input_ids"]]


def repository_data_files() -> list[Path]:
    """The built-in corpora, QA set and task files of the source tree this package runs from (none
    when it is installed elsewhere): the text every comparison reads besides the fixed probe."""
    data = Path(__file__).resolve().parents[3] / "data"
    return sorted([*data.glob("corpus/builtin/*.tsv"), *data.glob("qa/*.jsonl"), *data.glob("lm_eval/*.jsonl")])


def probe_lines(files: Sequence[Path]) -> list[str]:
    """The fixed probe and every text of the given data files: each tab-separated field of a line, and
    every string value of a JSON-lines record."""
    lines = list(PROBE)
    for path in files:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if Path(path).suffix == ".jsonl" and line.strip():
                lines.extend(_strings(json.loads(line)))
            else:
                lines.extend(field for field in line.split("\t") if field)
    return list(dict.fromkeys(lines))


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


def chosen_loader(directory: Path, reference: PreTrainedTokenizerBase, lines: Sequence[str]) -> dict[str, Any]:
    """The manifest's record of which tokenizer loader every job uses, after comparing the fast one with
    ``reference`` (the ``AutoTokenizer``) on ``lines``."""
    if not (Path(directory) / "tokenizer.json").is_file():
        return {"loader": AUTO, "reason": "no tokenizer.json"}
    differing = differing_lines(reference, fast_tokenizer(directory), lines)
    if differing:
        log.warning("the fast tokenizer differs from AutoTokenizer on %d of %d lines (first: %r); jobs load "
                    "AutoTokenizer", len(differing), len(lines), differing[0])  # fmt: skip
        return {"loader": AUTO, "reason": f"{len(differing)} of {len(lines)} lines encode differently"}
    return {"loader": FAST, "lines_compared": len(lines)}


def load_tokenizer(directory: Path, record: dict[str, Any] | None, trust_remote_code: bool) -> PreTrainedTokenizerBase:
    """The tokenizer a job uses: the fast one where ``prepare_model`` found it exact, else ``AutoTokenizer``."""
    if record is not None and record.get("loader") == FAST:
        return fast_tokenizer(directory)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory, trust_remote_code=trust_remote_code)
