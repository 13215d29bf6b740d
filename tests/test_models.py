import hashlib
import json
import shutil

import pytest

from tests.tiny import save_tiny_model
from transfer_neurons.model.loading import ModelSourceError, load_model, model_source, prepare_model


def test_local_directory_model_gets_a_manifest_with_facts(tmp_path):
    model_dir = save_tiny_model("qwen2", tmp_path / "tiny")
    manifest = prepare_model("tiny", {"path": str(model_dir)}, tmp_path / "out")
    assert manifest["facts"] == json.loads((tmp_path / "out/manifest.json").read_text())["facts"]
    assert manifest["facts"]["n_layers"] == 4
    loaded = load_model(tmp_path / "out/manifest.json", device="cpu")
    assert loaded.adapter.family == "llama"
    assert loaded.tokenizer is not None
    assert manifest["trust_remote_code"] is False
    digest = hashlib.sha256(b"model.safetensors" + (model_dir / "model.safetensors").read_bytes()).hexdigest()
    assert manifest["weights_sha256"] == digest


def test_hub_model_is_downloaded_with_revision_and_only_loadable_files(tmp_path, monkeypatch):
    source = save_tiny_model("gemma3", tmp_path / "hub-copy")
    calls = {}

    def fake_snapshot_download(repo_id, revision, local_dir, allow_patterns):
        calls.update(repo_id=repo_id, revision=revision, allow_patterns=allow_patterns)
        shutil.copytree(source, local_dir)
        return str(local_dir)

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot_download)
    manifest = prepare_model("g", {"hub": {"repo": "org/model", "revision": "abc123"}}, tmp_path / "out")
    assert calls["repo_id"] == "org/model" and calls["revision"] == "abc123"
    assert "*.safetensors" in calls["allow_patterns"] and "*.pth" not in calls["allow_patterns"]
    assert manifest["facts"]["family"] == "gemma"


def test_missing_model_directory_is_named(tmp_path):
    with pytest.raises(ModelSourceError, match="not a model directory"):
        prepare_model("x", {"path": str(tmp_path / "nowhere")}, tmp_path / "out")


def test_model_entry_needs_exactly_one_source():
    with pytest.raises(ModelSourceError, match="exactly one of"):
        model_source({"path": "a", "gguf": "b"})
    with pytest.raises(ModelSourceError, match="exactly one of"):
        model_source({"trust_remote_code": True})


def test_moved_model_fails_with_a_clear_error(tmp_path):
    model_dir = save_tiny_model("llama", tmp_path / "tiny")
    prepare_model("tiny", {"path": str(model_dir)}, tmp_path / "out")
    shutil.rmtree(model_dir)
    with pytest.raises(ModelSourceError, match="no longer exists"):
        load_model(tmp_path / "out/manifest.json", device="cpu")


def write_small_gguf(path):
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("small")
    writer.add_block_count(1)
    writer.add_context_length(16)
    writer.add_tensor("token_embd.weight", np.ones((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_metadata_is_read_once_within_the_block_and_equals_a_plain_read(tmp_path, monkeypatch):
    import gguf
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    from transfer_neurons.model.loading import gguf_read_once

    path = write_small_gguf(tmp_path / "small.gguf")
    plain = gguf_utils.load_gguf_checkpoint(path)
    constructed = []

    class CountingReader(gguf.GGUFReader):
        def __init__(self, *args, **kwargs):
            constructed.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(gguf, "GGUFReader", CountingReader)
    with gguf_read_once():
        first = gguf_utils.load_gguf_checkpoint(path)
        first["config"]["edited"] = True  # a caller's edit must not reach the next caller
        second = gguf_utils.load_gguf_checkpoint(path, return_tensors=False)
        reader = gguf.GGUFReader(path)  # as the weights' read constructs it
    assert len(constructed) == 1
    assert second == plain
    assert reader.fields.keys() == gguf.GGUFReader(path).fields.keys()
    assert len(constructed) == 2 and gguf.GGUFReader is CountingReader  # restored on leaving
    assert gguf_utils.load_gguf_checkpoint.__name__ == "load_gguf_checkpoint"
