"""The SentencePiece tokenizer path: a model file written from a GGUF's vocabulary, read by a tokenizer that
must encode and decode as transformers' own tokenizer of that GGUF does, and used only where it does.

The vocabulary is trained here (a small SentencePiece BPE with byte fallback, control tokens and a
user-defined piece of two spaces, on the built-in corpora) and written into a GGUF as llama.cpp writes
Gemma's; the reference is the tokenizer transformers builds from that GGUF, as ``AutoTokenizer`` does
for the default model.
"""

import io
import shutil
from pathlib import Path

import gguf
import pytest
import sentencepiece
from tokenizers import decoders
from transformers import PreTrainedTokenizerFast
from transformers.integrations.gguf import convert_gguf_tokenizer, get_gguf_tokenizer

from tests.tiny import save_tiny_model, tiny_model
from transfer_neurons.evaluation.neuron_tokens import token_pieces
from transfer_neurons.model import loading
from transfer_neurons.model.manifest import ADDED_TOKENS, MANIFEST
from transfer_neurons.model.sentencepiece_file import SPACE_MARK, Vocabulary, gguf_vocabulary, write_model
from transfer_neurons.model.sentencepiece_tokenizer import SentencePieceTokenizer, decoded_tokens
from transfer_neurons.model.tokenizer_loading import (
    FAST,
    PROBE,
    SENTENCEPIECE,
    SENTENCEPIECE_MODEL,
    chosen_loader,
    differing_decodings,
    differing_lines,
    load_tokenizer,
)

REPO = Path(__file__).resolve().parents[1]
SPACES = SPACE_MARK * 2  # the user-defined piece; a GGUF stores it as two spaces
SPECIAL_TEXTS = ["<start_of_turn>user hi", "a <eos> b", "x<pad>y", "  two  spaces", "<mask>"]


def corpus_lines(per_language: int = 150) -> list[str]:
    lines = []
    for lang in ("ja", "nl", "ko", "it"):
        rows = (REPO / "data" / "corpus" / "builtin" / f"en-{lang}.tsv").read_text(encoding="utf-8").splitlines()
        for row in rows[1 : per_language + 1]:
            lines.extend(row.split("\t")[1:3])
    return lines


def piece_type(processor: sentencepiece.SentencePieceProcessor, index: int) -> int:
    if processor.is_unknown(index):
        return 2
    if processor.is_control(index):
        return 3
    if processor.is_byte(index):
        return 6
    if processor.is_unused(index):
        return 5
    return 4 if processor.id_to_piece(index) == SPACES else 1


@pytest.fixture(scope="module")
def trained() -> sentencepiece.SentencePieceProcessor:
    """A small SentencePiece BPE in Gemma's layout (pad, eos, bos, unk first; byte fallback; no dummy prefix)."""
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus_lines()), model_writer=model, model_type="bpe", vocab_size=2000,
        byte_fallback=True, character_coverage=0.99, add_dummy_prefix=False, normalization_rule_name="identity",
        remove_extra_whitespaces=False, user_defined_symbols=[SPACES], control_symbols=["<mask>", "<start_of_turn>"],
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>",
        unk_piece="<unk>", minloglevel=2,
    )  # fmt: skip
    return sentencepiece.SentencePieceProcessor(model_proto=model.getvalue())


def write_gguf(path: Path, processor: sentencepiece.SentencePieceProcessor, tokenizer_model: str = "llama") -> Path:
    """A GGUF holding only the vocabulary, written as llama.cpp writes Gemma's (spaces as spaces)."""
    size = processor.get_piece_size()
    types = [piece_type(processor, index) for index in range(size)]
    writer = gguf.GGUFWriter(str(path), "gemma3")
    writer.add_tokenizer_model(tokenizer_model)
    writer.add_token_list([processor.id_to_piece(index).replace(SPACE_MARK, " ") if kind == 4
                           else processor.id_to_piece(index) for index, kind in enumerate(types)])  # fmt: skip
    writer.add_token_scores([processor.get_score(index) for index in range(size)])
    writer.add_token_types(types)
    writer.add_bos_token_id(2)
    writer.add_eos_token_id(1)
    writer.add_unk_token_id(3)
    writer.add_pad_token_id(0)
    writer.add_add_space_prefix(False)
    writer.add_add_bos_token(True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def gguf_reference(path: Path) -> PreTrainedTokenizerFast:
    """The tokenizer transformers builds from a GGUF (``AutoTokenizer``'s path for a GGUF model)."""
    architecture, tokenizer_dict, config = get_gguf_tokenizer(str(path))
    backend, _ = convert_gguf_tokenizer(architecture, tokenizer_dict)
    return PreTrainedTokenizerFast(tokenizer_object=backend, **{key: value for key, value in config.items() if value})


@pytest.fixture()
def model_directory(tmp_path, trained) -> tuple[Path, PreTrainedTokenizerFast]:
    """A model directory as ``prepare_model`` leaves one from a GGUF: the reference's files and the
    SentencePiece model written from the GGUF's vocabulary; and the reference, reloaded from its files."""
    path = write_gguf(tmp_path / "tiny.gguf", trained)
    directory = tmp_path / "weights"
    gguf_reference(path).save_pretrained(directory)
    vocabulary = gguf_vocabulary(path)
    assert vocabulary is not None
    write_model(vocabulary, directory / SENTENCEPIECE_MODEL)
    return directory, PreTrainedTokenizerFast.from_pretrained(directory)


def test_the_vocabulary_of_a_gguf_is_read_with_its_spaces_respelled(tmp_path, trained):
    vocabulary = gguf_vocabulary(write_gguf(tmp_path / "tiny.gguf", trained))
    assert vocabulary is not None
    size = trained.get_piece_size()
    assert vocabulary.pieces == tuple(trained.id_to_piece(index) for index in range(size))  # "  " read back as "▁▁"
    assert vocabulary.types == tuple(piece_type(trained, index) for index in range(size))
    assert SPACES in vocabulary.pieces and vocabulary.add_space_prefix is False


def test_a_gguf_without_a_sentencepiece_vocabulary_gives_none(tmp_path, trained):
    assert gguf_vocabulary(write_gguf(tmp_path / "tiny.gguf", trained, tokenizer_model="gpt2")) is None


def test_the_written_model_encodes_as_the_trained_one(tmp_path, trained):
    size = trained.get_piece_size()
    pieces = tuple(trained.id_to_piece(index) for index in range(size))
    vocabulary = Vocabulary(pieces, tuple(piece_type(trained, index) for index in range(size)), add_space_prefix=False)
    written = sentencepiece.SentencePieceProcessor(model_file=str(write_model(vocabulary, tmp_path / "t.model")))
    lines = [*corpus_lines(), *PROBE, *SPECIAL_TEXTS]
    assert [written.encode(line) for line in lines] == [trained.encode(line) for line in lines]
    assert not (tmp_path / "t.model.partial").exists()


def test_a_vocabulary_with_a_type_sentencepiece_does_not_know_is_refused():
    with pytest.raises(ValueError, match="unknown piece types"):
        Vocabulary(("<unk>", "a"), (2, 9), add_space_prefix=False)


def test_the_sentencepiece_loader_is_chosen_where_it_encodes_and_decodes_as_the_reference(model_directory):
    directory, reference = model_directory
    lines = [*corpus_lines(), *PROBE, *SPECIAL_TEXTS]
    added = directory.parent / "added_tokens.json"
    record = chosen_loader(directory, reference, lines, added)
    assert record["loader"] == SENTENCEPIECE and record["lines_compared"] == len(lines)
    tokenizer = load_tokenizer(directory, record, False)
    assert isinstance(tokenizer, SentencePieceTokenizer)
    # The jobs that cut sentences by character offsets get the Rust tokenizer, checked too.
    assert record["offsets_loader"] == FAST
    with_offsets = load_tokenizer(directory, record, False, offsets=True)
    assert isinstance(with_offsets, PreTrainedTokenizerFast) and "offset_mapping" in with_offsets(
        lines[0], return_offsets_mapping=True
    )
    ids = reference(lines[0])["input_ids"]
    pieces = token_pieces(tokenizer, lines[0], ids)  # without offsets: each token decoded alone
    assert pieces[0] == "<bos>" and "".join(pieces[1:]) == lines[0]
    assert differing_lines(reference, tokenizer, lines) == []
    assert reference("<start_of_turn>user hi")["input_ids"][:2] == [2, 5]  # BOS, then the control token whole
    assert differing_decodings(reference, tokenizer, lines, random_sequences=3000, seed=1) == []
    assert (len(tokenizer), tokenizer.all_special_ids) == (len(reference), reference.all_special_ids)
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (
        reference.bos_token_id, reference.eos_token_id, reference.pad_token_id)  # fmt: skip
    assert tokenizer.convert_ids_to_tokens(ids) == reference.convert_ids_to_tokens(ids)
    for side in ("left", "right"):
        tokenizer.padding_side = reference.padding_side = side
        ours, theirs = (t(lines[:6], padding=True, return_tensors="pt") for t in (tokenizer, reference))
        assert ours["input_ids"].tolist() == theirs["input_ids"].tolist()
        assert ours["attention_mask"].tolist() == theirs["attention_mask"].tolist()


def test_a_reference_without_bos_gives_a_tokenizer_without_bos(model_directory):
    directory, reference = model_directory
    reference.backend_tokenizer.post_processor = None
    added = directory.parent / "added_tokens.json"
    record = chosen_loader(directory, reference, ["Hallo wereld", *PROBE], added)
    assert record["loader"] == SENTENCEPIECE
    assert load_tokenizer(directory, record, False)("Hallo wereld")["input_ids"][0] != reference.bos_token_id


def wrong_prefix_model(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SentencePiece model that prepends a space, as the reference does not: the texts encode differently."""
    vocabulary = gguf_vocabulary(directory.parent / "tiny.gguf")
    assert vocabulary is not None
    write_model(Vocabulary(vocabulary.pieces, vocabulary.types, add_space_prefix=True), directory / SENTENCEPIECE_MODEL)


def decoding_with_a_suffix(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tokenizer that encodes alike but decodes differently."""
    plain = SentencePieceTokenizer._decode
    monkeypatch.setattr(SentencePieceTokenizer, "_decode", lambda self, **kwargs: plain(self, **kwargs) + "!")


def not_a_sentencepiece_model(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``tokenizer.model`` in another format (Llama 3 ships a tiktoken file of that name)."""
    (directory / SENTENCEPIECE_MODEL).write_text("IQ== 0\nIg== 1\n")


@pytest.mark.parametrize(
    "break_it", [wrong_prefix_model, decoding_with_a_suffix, not_a_sentencepiece_model],
    ids=["encoding", "decoding", "another format"],
)  # fmt: skip
def test_a_sentencepiece_tokenizer_that_differs_is_not_used(model_directory, monkeypatch, break_it):
    directory, reference = model_directory
    break_it(directory, monkeypatch)
    added = directory.parent / "added_tokens.json"
    record = chosen_loader(directory, reference, ["Hallo wereld", "Dov'è la stazione?"], added)
    assert record["loader"] == FAST  # the next loader, checked as before
    assert not added.exists()  # nothing of the refused loader is left for a job to read


def test_a_gguf_model_directory_gets_the_sentencepiece_model_of_its_vocabulary(tmp_path, trained, monkeypatch):
    path = write_gguf(tmp_path / "tiny.gguf", trained)
    # The weights' conversion is transformers' own and needs a whole model in the file: stand in for it.
    stand_in = (tiny_model("gemma3"), gguf_reference(path))
    monkeypatch.setattr(loading, "_load_transformers", lambda *args, **kwargs: stand_in)
    loading._gguf_to_directory(path, tmp_path / "weights", trust_remote_code=False)
    written = sentencepiece.SentencePieceProcessor(model_file=str(tmp_path / "weights" / SENTENCEPIECE_MODEL))
    assert [written.encode(line) for line in PROBE] == [trained.encode(line) for line in PROBE]


def test_prepare_model_records_the_sentencepiece_loader_and_jobs_load_it(tmp_path, model_directory):
    directory, reference = model_directory
    save_tiny_model("gemma3", tmp_path / "model")
    for name in ("tokenizer.json", "tokenizer_config.json", SENTENCEPIECE_MODEL):
        shutil.copy(directory / name, tmp_path / "model" / name)
    manifest = loading.prepare_model("tiny", {"path": str(tmp_path / "model")}, tmp_path / "prepared")
    record = manifest["tokenizer"]
    assert record["loader"] == SENTENCEPIECE and record["lines_compared"] > 10_000  # every text of data/
    # beside the manifest, not in the user's model directory
    assert Path(record["added_tokens"]) == (tmp_path / "prepared" / ADDED_TOKENS).resolve()
    loaded = loading.load_model(tmp_path / "prepared" / MANIFEST, device="cpu")
    assert isinstance(loaded.tokenizer, SentencePieceTokenizer)
    assert loaded.tokenizer("Dov'è la stazione?")["input_ids"] == reference("Dov'è la stazione?")["input_ids"]
    Path(record["added_tokens"]).unlink()
    with pytest.raises(FileNotFoundError, match="rerun prepare_model"):
        loading.load_model(tmp_path / "prepared" / MANIFEST, device="cpu")


@pytest.mark.parametrize(
    ("tokens", "text"),
    [
        (["a", "<0xE3>", "<0x81>", "<0x82>", "▁b"], "aあ b"),  # a valid run of bytes is its character
        (["<0x15>", "<0xB8>", "▁x"], "\ufffd\ufffd x"),  # an invalid run: one U+FFFD per byte, its ASCII too
        (["<0x41>"], "A"),
        (["<0xZZ>", "▁▁"], "<0xZZ>  "),  # not a byte piece; every ▁ is a space, in added tokens too
    ],
)
def test_tokens_are_decoded_as_byte_fallback_decodes_them(tokens, text):
    gemma_decoder = decoders.Sequence([decoders.Replace(SPACE_MARK, " "), decoders.ByteFallback(), decoders.Fuse()])
    assert decoded_tokens(tokens) == text == gemma_decoder.decode(tokens)
