"""The fast tokenizer path: used only where it encodes every text of data/ as AutoTokenizer does."""

from transformers import AutoTokenizer, PreTrainedTokenizerFast

from tests.tiny import save_tiny_model
from transfer_neurons.model.tokenizer_loading import (
    AUTO,
    FAST,
    chosen_loader,
    differing_lines,
    fast_tokenizer,
    load_tokenizer,
    probe_lines,
    repository_data_files,
)


def test_every_text_of_data_is_encoded_alike_by_the_fast_path(tmp_path):
    directory = save_tiny_model("llama", tmp_path / "model")
    lines = probe_lines(repository_data_files())
    assert len(lines) > 10_000  # the built-in corpora, QA set and tasks, not only the fixed probe
    auto, fast = AutoTokenizer.from_pretrained(directory), fast_tokenizer(directory)
    assert differing_lines(auto, fast, lines) == []
    assert (fast.bos_token_id, fast.eos_token_id, fast.pad_token_id) == (auto.bos_token_id, auto.eos_token_id,
                                                                          auto.pad_token_id)  # fmt: skip
    assert chosen_loader(directory, auto, lines) == {"loader": FAST, "lines_compared": len(lines)}


def test_a_tokenizer_that_encodes_differently_keeps_the_auto_loader(tmp_path):
    directory = save_tiny_model("llama", tmp_path / "model")
    other = save_tiny_model("llama", tmp_path / "other")
    reference = AutoTokenizer.from_pretrained(other)
    reference.backend_tokenizer.post_processor = None  # no BOS: every line differs
    record = chosen_loader(directory, reference, ["The cat sleeps.", "猫"])
    assert record["loader"] == AUTO and "2 of 2 lines" in record["reason"]


def test_jobs_load_the_recorded_tokenizer(tmp_path):
    directory = save_tiny_model("llama", tmp_path / "model")
    assert isinstance(load_tokenizer(directory, {"loader": FAST}, False), PreTrainedTokenizerFast)
    assert (
        type(load_tokenizer(directory, None, False)).__name__ == type(AutoTokenizer.from_pretrained(directory)).__name__
    )
