"""A SentencePiece model file written from a GGUF file's vocabulary.

A GGUF of a SentencePiece model (``tokenizer.ggml.model == "llama"``: Llama, Gemma, Mistral) keeps
the pieces, their types and scores but no ``tokenizer.model``. Jobs read a SentencePiece model in a
tenth of a second, where the Rust reader of the equivalent ``tokenizer.json`` spends one to two
seconds rebuilding its BPE merges (docs/timings.md), so ``prepare_model`` writes one here. Whether
it is used is decided by ``model.tokenizer_loading``, which compares it with ``AutoTokenizer`` on
every text of the built-in data.

The file is the ``ModelProto`` message of SentencePiece's ``sentencepiece_model.proto``, written
field by field (the library reads it; writing it needs no protobuf runtime):

* each piece with its type, and as its score minus its position in the vocabulary: the merge order
  transformers reads from a GGUF that lists no merges (its Gemma conversion; a BPE piece's score is
  its merge priority);
* a BPE model with byte fallback where the vocabulary has byte pieces;
* an identity normaliser that writes spaces as "▁" and prepends one only where the GGUF asks.

Pieces of spaces are respelled with "▁" (a GGUF stores Gemma's "▁▁" as two spaces), as SentencePiece
matches pieces against the text after its spaces became "▁".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

SPACE_MARK = "\u2581"
SENTENCEPIECE_GGUF_MODEL = "llama"  # tokenizer.ggml.model of a SentencePiece vocabulary
BYTE = 6  # SentencePiece's and GGUF's type of a byte-fallback piece (<0x00>..<0xFF>)
PIECE_TYPES = range(1, 7)  # normal, unknown, control, user-defined, unused, byte
BPE_MODEL_TYPE = 2

# Field numbers of sentencepiece_model.proto.
MODEL_PIECES, MODEL_TRAINER_SPEC, MODEL_NORMALIZER_SPEC = 1, 2, 3
PIECE_TEXT, PIECE_SCORE, PIECE_TYPE = 1, 2, 3
TRAINER_MODEL_TYPE, TRAINER_VOCAB_SIZE, TRAINER_BYTE_FALLBACK = 3, 4, 35
NORMALIZER_NAME, NORMALIZER_ADD_DUMMY_PREFIX = 1, 3
NORMALIZER_REMOVE_EXTRA_WHITESPACES, NORMALIZER_ESCAPE_WHITESPACES = 4, 5
VARINT, FIXED32, LENGTH_DELIMITED = 0, 5, 2  # protobuf wire types


@dataclass(frozen=True)
class Vocabulary:
    """A SentencePiece vocabulary: each piece (in id order) and its type, and whether a space is
    prepended to the text."""

    pieces: tuple[str, ...]
    types: tuple[int, ...]
    add_space_prefix: bool

    def __post_init__(self) -> None:
        if len(self.pieces) != len(self.types):
            raise ValueError(f"{len(self.pieces)} pieces but {len(self.types)} piece types")
        unknown = sorted(set(self.types) - set(PIECE_TYPES))
        if unknown:
            raise ValueError(f"unknown piece types {unknown}: SentencePiece's are {list(PIECE_TYPES)}")


def gguf_vocabulary(path: Path) -> Vocabulary | None:
    """The SentencePiece vocabulary of a GGUF file; None where the file's tokenizer is not a SentencePiece
    model (a byte-level BPE, for example)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    model = reader.fields.get("tokenizer.ggml.model")
    if model is None or _field_text(model) != SENTENCEPIECE_GGUF_MODEL:
        return None
    tokens, types = reader.fields["tokenizer.ggml.tokens"], reader.fields["tokenizer.ggml.token_type"]
    prefix = reader.fields.get("tokenizer.ggml.add_space_prefix")
    return Vocabulary(
        pieces=tuple(bytes(tokens.parts[index]).decode("utf-8").replace(" ", SPACE_MARK) for index in tokens.data),
        types=tuple(int(types.parts[index][0]) for index in types.data),
        # llama.cpp's reading of a file that does not say: a space is prepended
        add_space_prefix=True if prefix is None else bool(prefix.parts[prefix.data[0]][0]),
    )


def _field_text(field: object) -> str:
    parts, data = field.parts, field.data  # type: ignore[attr-defined]
    return bytes(parts[data[0]]).decode("utf-8")


def model_bytes(vocabulary: Vocabulary) -> bytes:
    """The serialised ``ModelProto`` of the vocabulary (see the module docstring)."""
    message = bytearray()
    for position, (piece, piece_type) in enumerate(zip(vocabulary.pieces, vocabulary.types, strict=True)):
        entry = (
            _length_delimited(PIECE_TEXT, piece.encode("utf-8"))
            + _field(PIECE_SCORE, FIXED32, struct.pack("<f", -float(position)))
            + _field(PIECE_TYPE, VARINT, _varint(piece_type))
        )
        message += _length_delimited(MODEL_PIECES, entry)
    trainer = (
        _field(TRAINER_MODEL_TYPE, VARINT, _varint(BPE_MODEL_TYPE))
        + _field(TRAINER_VOCAB_SIZE, VARINT, _varint(len(vocabulary.pieces)))
        + _field(TRAINER_BYTE_FALLBACK, VARINT, _varint(int(BYTE in vocabulary.types)))
    )
    normalizer = (
        _length_delimited(NORMALIZER_NAME, b"identity")
        + _field(NORMALIZER_ADD_DUMMY_PREFIX, VARINT, _varint(int(vocabulary.add_space_prefix)))
        + _field(NORMALIZER_REMOVE_EXTRA_WHITESPACES, VARINT, _varint(0))
        + _field(NORMALIZER_ESCAPE_WHITESPACES, VARINT, _varint(1))
    )
    message += _length_delimited(MODEL_TRAINER_SPEC, trainer) + _length_delimited(MODEL_NORMALIZER_SPEC, normalizer)
    return bytes(message)


def write_model(vocabulary: Vocabulary, path: Path) -> Path:
    """Write the vocabulary's SentencePiece model to ``path`` (whole or not at all)."""
    return write_whole(path, model_bytes(vocabulary))


def write_whole(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a ``.partial`` file beside it, so that a killed job leaves no half
    file under the name a job reads."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)
    return path


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if not value:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire_type) + payload


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _field(number, LENGTH_DELIMITED, _varint(len(payload)) + payload)
