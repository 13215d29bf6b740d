"""The authors' published detection loop, re-implemented faithfully so that it can be timed beside ours.

Source: the paper's repository, HinaTezuka/emnlp2025-transfer-neurons, ``tn/detect_tn.py``
calling ``compute_scores_for_tn_detection`` and ``get_inner_reps`` of
``utils/general_utils.py``. Those functions need ``baukit`` (not on the package index), so
they cannot be imported; this module re-implements their loop, in their order and with
their operations:

* one run per centroid type (``detect_tn.py --TN_Type type1``, then ``type2``), each over
  every sentence;
* per sentence, one batch-1 forward pass of the whole model (logits at every position) with
  ``output_hidden_states=True``, no truncation, read at the last token;
* per layer: the residual before the MLP and its cosine to the centroid, the layer's write
  vectors read from the model again (they index ``down_proj.weight.T`` per sentence and
  layer), the [d_mlp, d_model] float32 matrix of moved states ``r + a_i v_i`` for all
  neurons at once, its cosine to the centroid with ``sklearn.metrics.pairwise.cosine_similarity``
  (as they call it), and the difference kept per sentence in a float64
  [layers, neurons, sentences] array whose mean over sentences is the score.

Where it differs, it differs to be comparable, never to be slower:

* it reads the project's captured states, not ``hs_pre + atts`` (layer input plus
  ``self_attn.o_proj`` output) and ``act_fn * up_proj``: for Llama-like models these are the
  same numbers, but Gemma normalises the attention output before adding it and the MLP output
  after, so for Gemma their expression is not the residual before the MLP. The write vectors
  are the adapter's (``down_proj`` columns, times the post-MLP norm's gain for Gemma) and the
  activations the effective ones (times the per-token write scale), as in ``naive.py``, so
  that both references and the project score the same quantity;
* the forward pass records the last token with the project's hooks (a copy per layer) where
  baukit's ``TraceDict`` keeps every traced module's whole output;
* every layer is scored for both types, as the project does (their script scores Type-1
  candidates in the first 20 of 32 layers only: 52 of 64 layer-type pairs);
* ``np.where(s >= base, |base - s|, -|base - s|)`` in their loop is ``s - base``, written so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from sklearn.metrics.pairwise import cosine_similarity

from benchmarks.timing import Splits
from transfer_neurons.model.batching import tokenize
from transfer_neurons.model.hooks import CapturedStates, capture_states
from transfer_neurons.model.loading import LoadedModel

WriteVectors = Callable[[int], np.ndarray]  # layer -> [d_mlp, d_model] float32, read anew at every call


def model_write_vectors(loaded: LoadedModel) -> WriteVectors:
    """The layer's write vectors read from the model on every call, as their loop reads ``down_proj``."""
    return lambda layer: loaded.adapter.write_vectors(layer).cpu().numpy()


def their_forward(loaded: LoadedModel, sentence: str) -> CapturedStates:
    """One batch-1 pass of the whole model over one sentence, hidden states of every layer returned.

    As ``get_inner_reps``: ``model(input_ids, output_hidden_states=True)``, logits at every position.
    """
    batch = tokenize(loaded.tokenizer, [sentence]).to(loaded.device)
    with torch.no_grad(), capture_states(loaded.adapter) as captured:
        loaded.model(**batch.model_inputs(loaded.model), output_hidden_states=True)
    return captured["states"]


def sentence_layer_scores(
    residual: np.ndarray, activations: np.ndarray, write_vectors: np.ndarray, centroid: np.ndarray
) -> np.ndarray:
    """Their per-(sentence, layer) step: cos(r + a_i v_i, c) - cos(r, c) for every neuron i.

    residual [d], activations [n] (effective), write_vectors [n, d], centroid [d] -> [n] float32.
    """
    c = centroid.reshape(1, -1)
    before_mlp = residual.reshape(1, -1)
    layer_score = cosine_similarity(before_mlp, c)[0, 0]
    moved = residual + activations.reshape(-1, 1) * write_vectors  # [n, d]: every neuron's write added
    neuron_scores = cosine_similarity(moved, c).reshape(-1)
    return neuron_scores - layer_score


def their_scores(
    residual: np.ndarray,
    activations: np.ndarray,
    write_vectors: WriteVectors,
    centroids: np.ndarray,
    layers: Sequence[int],
) -> np.ndarray:
    """Their loop over captured states: per centroid type, per sentence, per layer.

    residual [L, S, d], activations [L, S, n] (effective), centroids [T, L, d] (float32);
    ``layers`` the layers scored -> scores [T, len(layers), n] float64.
    """
    n_sentences = residual.shape[1]
    per_type = []
    for centroid_type in range(centroids.shape[0]):  # one detect_tn.py run per type
        per_sentence = None
        for sentence in range(n_sentences):
            for position, layer in enumerate(layers):
                scores = sentence_layer_scores(
                    residual[layer, sentence],
                    activations[layer, sentence],
                    write_vectors(layer),
                    centroids[centroid_type, layer],
                )
                if per_sentence is None:  # their scores_all_txt: [layers, neurons, sentences] float64
                    per_sentence = np.zeros((len(layers), scores.shape[0], n_sentences))
                per_sentence[position, :, sentence] = scores
        per_type.append(per_sentence.mean(axis=2))
    return np.stack(per_type)


def their_end_to_end(
    loaded: LoadedModel, sentences: Sequence[str], centroids: np.ndarray, layers: Sequence[int]
) -> tuple[np.ndarray, Splits]:
    """Their whole detection: per centroid type, per sentence, a forward pass then every layer's scores.

    centroids [T, L, d] -> (scores [T, len(layers), n] float64, seconds spent in forward passes and in scoring).
    """
    splits = Splits()
    write_vectors = model_write_vectors(loaded)
    per_type = []
    for centroid_type in range(centroids.shape[0]):  # one detect_tn.py run per type, forward passes included
        per_sentence = np.zeros((len(layers), loaded.facts.d_mlp, len(sentences)))
        for index, sentence in enumerate(sentences):
            with splits.measure("forward"):
                states = their_forward(loaded, sentence)
                residual = states.residual_pre_mlp[:, 0].cpu().numpy()
                activations = states.effective_activations[:, 0].cpu().numpy()
            with splits.measure("scoring"):
                for position, layer in enumerate(layers):
                    per_sentence[position, :, index] = sentence_layer_scores(
                        residual[layer], activations[layer], write_vectors(layer), centroids[centroid_type, layer]
                    )
        per_type.append(per_sentence.mean(axis=2))
    return np.stack(per_type), splits
