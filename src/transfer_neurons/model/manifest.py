"""The manifest ``prepare_model`` writes: where a prepared model lives and its facts (layers, widths).

Plain JSON with no heavy imports, so that rules that only need the facts need not load torch.
"""

from __future__ import annotations

import json
from pathlib import Path

MANIFEST = "manifest.json"
# Beside the manifest: the reference tokenizer's added tokens, where jobs load the SentencePiece tokenizer.
ADDED_TOKENS = "tokenizer_added_tokens.json"


def read_manifest(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def manifest_facts(path: Path) -> dict:
    """The model facts a manifest records (n_layers, d_model, d_mlp...), without loading the model."""
    return read_manifest(path)["facts"]
