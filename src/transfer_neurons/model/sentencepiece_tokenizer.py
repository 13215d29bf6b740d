"""A transformers tokenizer on a SentencePiece model file, loaded in a fraction of a second.

``SentencePieceTokenizer`` is transformers' SentencePiece backend (a Python ``PreTrainedTokenizer``
around ``sentencepiece``) made to behave as the model's ``AutoTokenizer``:

* the reference's added tokens (Gemma 3: 6,384) and special tokens, and the ids it puts around a
  text (Gemma: BOS before), come from a small JSON file that ``prepare_model`` writes from the
  reference (``write_added_tokens``), not from the 33 MB ``tokenizer.json``;
* decoding turns pieces and added tokens into text as the ``tokenizers`` decoder of Gemma's
  ``tokenizer.json`` does (``decoded_tokens``; transformers' backend strips the text, and
  SentencePiece's own decoder reads a run of byte pieces that is not valid UTF-8 differently);
* its length is counted without building the 262k-entry vocabulary, which transformers' base class
  builds twice while it starts (0.7 s).

Whether the jobs use it is ``model.tokenizer_loading``'s decision: only where it encodes and decodes
every compared text exactly as ``AutoTokenizer`` does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers.tokenization_utils_base import AddedToken
from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

from transfer_neurons.model.sentencepiece_file import SPACE_MARK, write_whole
from transfer_neurons.model.tokenizer_loading import SPECIAL_TOKEN_KEYS

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

REPLACEMENT = "\ufffd"
ADDED_TOKEN_FLAGS = ("special", "lstrip", "rstrip", "normalized", "single_word")


class SentencePieceTokenizer(SentencePieceBackend):
    """``AutoTokenizer``'s behaviour on a SentencePiece model file (see the module docstring)."""

    vocab_files_names = {"vocab_file": "tokenizer.model"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file: str, prefix_ids: Sequence[int] = (), suffix_ids: Sequence[int] = (), **kwargs: Any):
        self.prefix_ids, self.suffix_ids = list(prefix_ids), list(suffix_ids)
        super().__init__(vocab_file=vocab_file, legacy=True, **kwargs)

    def _update_total_vocab_size(self) -> None:
        # The base class counts get_vocab(): a 262k-entry dict, rebuilt on every call.
        beyond = [index for index in self._added_tokens_decoder if index >= self.sp_model.get_piece_size()]
        self.total_vocab_size = self.sp_model.get_piece_size() + len(beyond)

    def get_vocab(self) -> dict[str, int]:
        size = self.sp_model.get_piece_size()
        vocabulary = dict(zip(self.sp_model.id_to_piece(list(range(size))), range(size), strict=True))
        vocabulary.update(self._added_tokens_encoder)
        return vocabulary

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        return self.sp_model.encode(text, out_type=str)

    def build_inputs_with_special_tokens(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        if token_ids_1 is not None:
            raise ValueError("SentencePieceTokenizer encodes single texts; pairs go through AutoTokenizer")
        return self.prefix_ids + list(token_ids_0) + self.suffix_ids

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return self._decode(self.convert_tokens_to_ids(tokens))

    def _decode(  # type: ignore[override]  # the base class's keywords, as transformers calls it
        self, token_ids: int | list[int], skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None, **kwargs: Any,
    ) -> str:  # fmt: skip
        ids = [token_ids] if isinstance(token_ids, int) else list(token_ids)
        skipped = self._special_ids() if skip_special_tokens else set()
        kept = [index for index in ids if index not in skipped]
        added = self._added_tokens_decoder
        tokens = [added[index].content if index in added else self.sp_model.id_to_piece(index) for index in kept]
        text = decoded_tokens(tokens)
        clean = clean_up_tokenization_spaces
        if clean is None:
            clean = self.clean_up_tokenization_spaces
        return self.clean_up_tokenization(text) if clean else text

    def _special_ids(self) -> set[int]:
        """What ``skip_special_tokens`` drops: the special tokens, and every added token marked special
        (kept until a token is added: decoding is called per generated answer)."""
        key = (len(self._added_tokens_decoder), tuple(self.all_special_ids))
        if getattr(self, "_special_ids_key", None) != key:
            marked = {index for index, token in self._added_tokens_decoder.items() if token.special}
            self._special_ids_cache, self._special_ids_key = marked | set(self.all_special_ids), key
        return self._special_ids_cache


def decoded_tokens(tokens: Sequence[str]) -> str:
    """Tokens (pieces and added tokens' text) joined as the ``tokenizers`` decoder Replace("▁", " "),
    ByteFallback, Fuse joins them (Gemma's): each run of byte pieces ("<0xE3>") is its UTF-8 text, or
    one "\ufffd" per byte where the run is not valid UTF-8 as a whole."""
    parts: list[str] = []
    pending = bytearray()
    for token in tokens:
        value = byte_value(token)
        if value is not None:
            pending.append(value)
            continue
        if pending:
            parts.append(bytes_text(pending))
            pending = bytearray()
        parts.append(token.replace(SPACE_MARK, " "))
    if pending:
        parts.append(bytes_text(pending))
    return "".join(parts)


def byte_value(token: str) -> int | None:
    """The byte a byte-fallback piece stands for ("<0x41>" -> 65), else None."""
    if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
        try:
            return int(token[3:5], 16)
        except ValueError:
            return None
    return None


def bytes_text(data: bytearray) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return REPLACEMENT * len(data)


def write_added_tokens(reference: PreTrainedTokenizerBase, path: Path) -> Path:
    """The reference tokenizer's added and special tokens and the ids it puts around a text, as JSON."""
    text = "a"
    plain = reference(text, add_special_tokens=False)["input_ids"]
    whole = reference(text)["input_ids"]
    start = next((index for index in range(len(whole)) if whole[index : index + len(plain)] == plain), None)
    if start is None:
        raise ValueError(f"the reference tokenizer's ids of {text!r} do not contain its ids without special tokens")
    record = {
        "added_tokens": [
            {"id": index, "content": token.content, **{flag: getattr(token, flag) for flag in ADDED_TOKEN_FLAGS}}
            for index, token in sorted(reference.added_tokens_decoder.items())
        ],
        "special_tokens": {key: str(getattr(reference, key)) for key in SPECIAL_TOKEN_KEYS if getattr(reference, key)},
        "prefix_ids": whole[:start],
        "suffix_ids": whole[start + len(plain) :],
        "clean_up_tokenization_spaces": bool(reference.clean_up_tokenization_spaces),
    }
    return write_whole(path, json.dumps(record, ensure_ascii=False).encode("utf-8"))


def sentencepiece_tokenizer(model_file: Path, added_tokens_file: Path) -> SentencePieceTokenizer:
    """The tokenizer of a SentencePiece model file with the added tokens ``write_added_tokens`` recorded."""
    record = json.loads(Path(added_tokens_file).read_text(encoding="utf-8"))
    added = {
        entry["id"]: AddedToken(entry["content"], **{flag: entry[flag] for flag in ADDED_TOKEN_FLAGS})
        for entry in record["added_tokens"]
    }
    return SentencePieceTokenizer(
        str(model_file), prefix_ids=record["prefix_ids"], suffix_ids=record["suffix_ids"], added_tokens_decoder=added,
        clean_up_tokenization_spaces=record["clean_up_tokenization_spaces"], **record["special_tokens"],
    )  # fmt: skip
