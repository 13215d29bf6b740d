"""Loading a model's tokenizer fast, and only where that is exact.

``AutoTokenizer.from_pretrained`` on Gemma 3's 262k-token ``tokenizer.json`` parses the file in
Python, rebuilds the tokenizer from its vocabulary and merges and deep-copies thousands of added
tokens: 2.8-4.5 s of every model job on the 2-core reference machine (6.5 s with two jobs side by
side). ``PreTrainedTokenizerFast(tokenizer_file=...)`` lets the Rust reader read the same file and
adds the special tokens of ``tokenizer_config.json``: 1.0-1.2 s, most of it rebuilding the 514,906
BPE merges. A SentencePiece model of the same vocabulary (``tokenizer.model``: shipped by a hub
model, written by ``prepare_model`` from a GGUF) has no merges to rebuild:
``model.sentencepiece_tokenizer`` loads it in a few tenths of a second.

None of these is the same code as ``AutoTokenizer``, so ``prepare_model`` compares them once per
model, on every text of the built-in data (data/: corpora, QA set, multiple-choice tasks; 12,238
distinct texts) and a fixed multi-script probe, and records in the manifest which one every job
loads: ``sentencepiece`` where it encodes every text to the same ids and decodes those ids (and
random id sequences, as generated text can be) to the same strings, else ``fast`` where every
encoding agrees, else ``auto``.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

log = logging.getLogger(__name__)

AUTO, FAST, SENTENCEPIECE = "auto", "fast", "sentencepiece"
SENTENCEPIECE_MODEL = "tokenizer.model"
RANDOM_SEQUENCES = 5000  # random id sequences whose decoding is compared, besides every text's ids
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


def differing_decodings(
    reference: PreTrainedTokenizerBase, candidate: PreTrainedTokenizerBase, lines: Iterable[str],
    random_sequences: int = RANDOM_SEQUENCES, seed: int = 0,
) -> list[list[int]]:  # fmt: skip
    """The id sequences the two tokenizers decode to different strings (with and without skipping special
    tokens): each line's ids (the reference's), whole and without the first (a text that starts mid-way,
    as a generated answer does), and ``random_sequences`` seeded random sequences of 1-7 ids of the
    vocabulary (byte pieces cut mid-character, special tokens mid-text)."""
    sequences = []
    for line in lines:
        ids = reference(line)["input_ids"]
        sequences.extend([ids, ids[1:]])
    rng = random.Random(seed)
    size = len(reference)
    sequences.extend([rng.randrange(size) for _ in range(rng.randrange(1, 8))] for _ in range(random_sequences))
    return [
        ids
        for ids in sequences
        if any(
            reference.decode(ids, skip_special_tokens=skip) != candidate.decode(ids, skip_special_tokens=skip)
            for skip in (False, True)
        )  # fmt: skip
    ]


def chosen_loader(
    directory: Path, reference: PreTrainedTokenizerBase, lines: Sequence[str], added_tokens_file: Path | None = None
) -> dict[str, Any]:
    """The manifest's record of which tokenizer loader every job uses, after comparing the faster ones with
    ``reference`` (the ``AutoTokenizer``) on ``lines``. The SentencePiece loader is tried where the model
    directory has a ``tokenizer.model`` and ``added_tokens_file`` says where to record the reference's
    added tokens."""
    directory = Path(directory)
    fast = fast_record(directory, reference, lines)
    if added_tokens_file is not None and (directory / SENTENCEPIECE_MODEL).is_file():
        record = sentencepiece_record(directory, reference, lines, Path(added_tokens_file))
        if record is not None:
            # SentencePiece's tokenizer gives no character offsets: the jobs that need them (the neuron
            # browser's token pieces) load the next loader.
            return {**record, "offsets_loader": fast["loader"]}
    return fast


def fast_record(directory: Path, reference: PreTrainedTokenizerBase, lines: Sequence[str]) -> dict[str, Any]:
    """The Rust reader's record where it encodes every line as ``reference`` does, else AutoTokenizer's."""
    if not (directory / "tokenizer.json").is_file():
        return {"loader": AUTO, "reason": "no tokenizer.json"}
    differing = differing_lines(reference, fast_tokenizer(directory), lines)
    if differing:
        log.warning("the fast tokenizer differs from AutoTokenizer on %d of %d lines (first: %r); jobs load "
                    "AutoTokenizer", len(differing), len(lines), differing[0])  # fmt: skip
        return {"loader": AUTO, "reason": f"{len(differing)} of {len(lines)} lines encode differently"}
    return {"loader": FAST, "lines_compared": len(lines)}


def sentencepiece_record(
    directory: Path, reference: PreTrainedTokenizerBase, lines: Sequence[str], added_tokens_file: Path
) -> dict[str, Any] | None:
    """The SentencePiece loader's record where its tokenizer encodes and decodes as ``reference`` does, else
    None (and no added-tokens file left behind)."""
    from transfer_neurons.model.sentencepiece_tokenizer import sentencepiece_tokenizer, write_added_tokens

    write_added_tokens(reference, added_tokens_file)
    try:
        candidate = sentencepiece_tokenizer(directory / SENTENCEPIECE_MODEL, added_tokens_file)
    except (RuntimeError, OSError, ValueError) as error:  # not a SentencePiece model (a tiktoken file, say)
        added_tokens_file.unlink()
        log.warning("%s is not read by sentencepiece (%s); not used", directory / SENTENCEPIECE_MODEL, error)
        return None
    differing = differing_lines(reference, candidate, lines)
    undecoded = [] if differing else differing_decodings(reference, candidate, lines)
    if differing or undecoded:
        added_tokens_file.unlink()
        if differing:
            what = f"{len(differing)} of {len(lines)} lines encode differently (first: {differing[0]!r})"
        else:
            what = f"{len(undecoded)} id sequences decode differently (first: {undecoded[0]})"
        log.warning("the SentencePiece tokenizer differs from AutoTokenizer: %s; not used", what)
        return None
    return {
        "loader": SENTENCEPIECE,
        "added_tokens": str(Path(added_tokens_file).resolve()),
        "lines_compared": len(lines),
        "decodings_compared": 2 * (2 * len(lines) + RANDOM_SEQUENCES),  # each with and without special tokens
    }


def load_tokenizer(
    directory: Path, record: dict[str, Any] | None, trust_remote_code: bool, *, offsets: bool = False
) -> PreTrainedTokenizerBase:
    """The tokenizer a job uses: the one ``prepare_model`` found exact (SentencePiece, then fast), else
    ``AutoTokenizer``; with ``offsets``, one that gives each token's character offsets (not SentencePiece)."""
    if record is not None and record.get("loader") == SENTENCEPIECE and offsets:
        record = {"loader": record.get("offsets_loader", AUTO)}
    if record is not None and record.get("loader") == SENTENCEPIECE:
        from transfer_neurons.model.sentencepiece_tokenizer import sentencepiece_tokenizer

        files = (Path(directory) / SENTENCEPIECE_MODEL, Path(record["added_tokens"]))
        missing = [str(path) for path in files if not path.is_file()]
        if missing:
            raise FileNotFoundError(f"the tokenizer's {', '.join(missing)} no longer exist; rerun prepare_model")
        return sentencepiece_tokenizer(*files)
    if record is not None and record.get("loader") == FAST:
        return fast_tokenizer(directory)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory, trust_remote_code=trust_remote_code)
