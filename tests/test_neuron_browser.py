"""The neuron browser: the adapters' final norm and unembedding, the token pass, the logit lens, the
profiles, the site generator, and the site in a real browser (Debian's Chromium, driven by Playwright).

The site for the browser test is built in seconds from a tiny model: real dumps, token pass, lens and
profiles, with synthetic score tables ranked by the workflow's own ranking.
"""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser

import numpy as np
import polars as pl
import pytest
import torch

from tests import test_report_browser
from tests.tiny import TOKENIZER_TEXT, save_tiny_model, tiny_model
from transfer_neurons.data.dumps import Dump, dump_split, last_token_states
from transfer_neurons.data.tidy import labelled
from transfer_neurons.detection.ranking import rank_candidates, top_n_lists
from transfer_neurons.detection.stages import score_table
from transfer_neurons.evaluation.neuron_tokens import (
    TokenSettings,
    TopSentences,
    lens_logits,
    neuron_lens,
    neuron_token_activations,
    run_neuron_lens,
    run_neuron_profiles,
    run_neuron_tokens,
    selected_neurons,
    token_pieces,
)
from transfer_neurons.model.adapters import adapter_for
from transfer_neurons.model.batching import tokenize
from transfer_neurons.model.hooks import capture_states
from transfer_neurons.model.loading import prepare_model
from transfer_neurons.reporting.neuron_browser import (
    BrowserData,
    BrowserSettings,
    build_neuron_browser,
    index_rows,
    layer_neighbours,
    overlap_counts,
    page_neurons,
    write_site,
)

# The report test's session fixture (installs Debian's Chromium where it is missing) and launch flags.
chromium = test_report_browser.chromium
CHROMIUM_ARGS = test_report_browser.CHROMIUM_ARGS

HOSTILE = """<script>alert("x")</script> & 'quoted' "double" </p><b>bold?</b> a<b"""
SENTENCES = [*TOKENIZER_TEXT, HOSTILE]


# --- adapters: final norm and unembedding ----------------------------------------------------------


def raw_last_layer_and_outputs(model, tokenizer):
    """The last decoder layer's raw output [B, T, d_model] and the model's own outputs, one pass."""
    adapter = adapter_for(model)
    batch = tokenize(tokenizer, ["The cat sleeps on the sofa.", "駅はどこですか？", HOSTILE])
    with torch.no_grad(), capture_states(adapter, [adapter.facts.n_layers - 1], last_token_only=False) as captured:
        outputs = model(**batch.model_inputs(model), output_hidden_states=True)
    return adapter, captured["states"].layer_output[0], outputs, batch.attention_mask.bool()


def test_final_norm_of_the_raw_last_layer_is_the_models_last_hidden_state(model, tokenizer):
    # In transformers 5.24 every family's hidden_states[-1] is the normed state (capture_outputs ties it to
    # last_hidden_state; BLOOM appends it after ln_f), not the last layer's raw output.
    adapter, raw, outputs, real = raw_last_layer_and_outputs(model, tokenizer)
    with torch.no_grad():
        normed = adapter.final_norm()(raw)
    torch.testing.assert_close(normed[real], outputs.hidden_states[-1][real], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(raw[real], outputs.hidden_states[-1][real], atol=1e-3)


def test_unembedding_of_the_final_norm_gives_the_logits(model, tokenizer):
    adapter, raw, outputs, real = raw_last_layer_and_outputs(model, tokenizer)
    with torch.no_grad():
        logits = adapter.unembedding()(adapter.final_norm()(raw))
    config = model.config
    # What the families' forward passes do after the unembedding (transformers 5.24): Cohere multiplies
    # by logit_scale, Gemma 2 soft-caps at final_logit_softcapping (Gemma 3's default is no cap).
    if getattr(config, "logit_scale", None) is not None:
        logits = logits * config.logit_scale
    if getattr(config, "final_logit_softcapping", None) is not None:
        cap = config.final_logit_softcapping
        logits = torch.tanh(logits / cap) * cap
    torch.testing.assert_close(logits[real], outputs.logits[real], rtol=1e-5, atol=1e-5)


def test_lens_logits_follow_each_norms_formula():
    vector = torch.randn(2, 32, generator=torch.Generator().manual_seed(3))
    for family in ("llama", "gemma3", "bloom"):
        model = tiny_model(family)
        adapter = adapter_for(model)
        norm, weight = adapter.final_norm(), adapter.unembedding().weight.detach()
        eps = norm.eps if hasattr(norm, "eps") else norm.variance_epsilon
        if family == "bloom":  # LayerNorm: centred, scaled, its bias drops out
            centred = vector - vector.mean(-1, keepdim=True)
            read = centred / torch.sqrt(centred.pow(2).mean(-1, keepdim=True) + eps) * norm.weight.detach()
        else:  # RMSNorm; Gemma's gain is 1 + weight
            gain = norm.weight.detach() + (1.0 if family == "gemma3" else 0.0)
            read = vector / torch.sqrt(vector.pow(2).mean(-1, keepdim=True) + eps) * gain
        torch.testing.assert_close(lens_logits(adapter, vector), read @ weight.T, rtol=1e-4, atol=1e-5)
        # The norm divides out the vector's length.
        torch.testing.assert_close(
            lens_logits(adapter, 7.0 * vector), lens_logits(adapter, vector), rtol=1e-4, atol=1e-4
        )


def test_neuron_lens_lists_the_extreme_tokens_in_order(loaded):
    neurons = pl.DataFrame({"layer": [0, 3], "neuron": [5, 11]}, schema={"layer": pl.Int32, "neuron": pl.Int32})
    table = neuron_lens(loaded, neurons, n_tokens=4)
    assert table.height == 2 * 2 * 4
    for (layer, neuron), rows in table.partition_by("layer", "neuron", as_dict=True).items():
        logits = lens_logits(loaded.adapter, loaded.adapter.write_vectors(layer)[[neuron]])[0, : len(loaded.tokenizer)]
        promoted = rows.filter(pl.col("direction") == "promoted").sort("rank")
        suppressed = rows.filter(pl.col("direction") == "suppressed").sort("rank")
        assert promoted["token_id"].to_list() == logits.argsort(descending=True)[:4].tolist()
        assert suppressed["token_id"].to_list() == logits.argsort()[:4].tolist()
        np.testing.assert_allclose(promoted["logit"].to_numpy(), logits.sort(descending=True).values[:4], rtol=1e-5)
        assert promoted["token"].to_list() == loaded.tokenizer.convert_ids_to_tokens(promoted["token_id"].to_list())


# --- the token pass ---------------------------------------------------------------------------------


@pytest.mark.parametrize("by_magnitude", [False, True])
def test_top_sentences_keep_the_best_k_over_batches(by_magnitude):
    generator = np.random.default_rng(0)
    n_sentences, n_neurons, k = 23, 5, 3
    lengths = generator.integers(2, 7, n_sentences)
    values = [generator.normal(size=(length, n_neurons)).astype(np.float32) for length in lengths]
    values[4][:] = values[9][: len(values[4])] = 9.0  # a tie: the sentence seen first ranks first
    top = TopSentences(n_neurons, k, by_magnitude)
    for rows in ([3, 9, 1], [0, 4, 2, 5], list(range(6, 9)), list(range(10, n_sentences))):
        width = max(lengths[rows]) + 1  # left padding, as the batches have
        activations = np.full((len(rows), width, n_neurons), 50.0, dtype=np.float32)  # padding must not count
        real = np.zeros((len(rows), width), dtype=bool)
        for index, row in enumerate(rows):
            activations[index, width - lengths[row] :] = values[row]
            real[index, width - lengths[row] :] = True
        counted = real.copy()
        counted[:, -1] = False  # the last token does not rank the sentence here (as if special)
        top.update(rows, activations, real, counted)
    kept = {(neuron, rank): (row, maximum, tokens) for neuron, rank, row, maximum, tokens in top.kept()}
    for neuron in range(n_neurons):
        keyed = [np.abs(values[row]) if by_magnitude else values[row] for row in range(n_sentences)]
        maxima = np.array([keyed[row][:-1, neuron].max() for row in range(n_sentences)])
        expected = sorted(range(n_sentences), key=lambda row: -maxima[row])[:k]
        if neuron == 0:
            assert expected[:2] == [4, 9]
        for rank, row in enumerate(expected, start=1):
            got_row, maximum, tokens = kept[(neuron, rank)]
            assert got_row == row or maxima[got_row] == maxima[row]
            assert maximum == pytest.approx(maxima[row])
            np.testing.assert_array_equal(tokens, values[got_row][:, neuron])
    assert len(top.tokens) == n_neurons * k  # only the kept sentences' tokens stay in memory


def test_token_pieces_add_up_to_the_sentence(tokenizer):
    for sentence in SENTENCES:
        ids = tokenizer(sentence, add_special_tokens=True)["input_ids"]
        pieces = token_pieces(tokenizer, sentence, ids)
        assert len(pieces) == len(ids)
        assert "".join(pieces) == sentence
        assert pieces[0] == ""  # the BOS token covers no text


@pytest.mark.parametrize("rank_by", ["max", "max_abs"])
def test_token_pass_matches_sentences_read_alone(loaded, rank_by):
    neurons = pl.DataFrame(
        {"layer": [0, 0, 2, 3], "neuron": [1, 40, 7, 47]}, schema={"layer": pl.Int32, "neuron": pl.Int32}
    )
    k = 3
    table = neuron_token_activations(
        loaded, SENTENCES, neurons, settings=TokenSettings(k, batch_size=3, rank_by=rank_by)
    )
    last_states = last_token_states(loaded, SENTENCES).neuron_activations
    tokenizer = loaded.tokenizer
    alone = []
    for sentence in SENTENCES:  # one sentence per pass: no padding
        batch = tokenize(tokenizer, [sentence])
        with torch.no_grad(), capture_states(loaded.adapter, last_token_only=False) as captured:
            loaded.model.base_model(**batch.model_inputs(loaded.model.base_model))
        special = torch.isin(batch.input_ids[0], torch.tensor(tokenizer.all_special_ids))
        alone.append((captured["states"].neuron_activations[:, 0], special))
    for layer, neuron in neurons.rows():
        rows = table.filter((pl.col("layer") == layer) & (pl.col("neuron") == neuron))
        # Each sentence's peak: its largest text-token activation, or the one largest in magnitude, signed.
        text_values = [acts[layer, ~special, neuron] for acts, special in alone]
        peaks = [float(v[v.abs().argmax()] if rank_by == "max_abs" else v.max()) for v in text_values]
        keys = [abs(peak) if rank_by == "max_abs" else peak for peak in peaks]
        best = sorted(range(len(SENTENCES)), key=lambda row: -keys[row])[:k]
        ranked = (
            rows.group_by("sentence_rank").agg(pl.first("sentence"), pl.first("peak_activation")).sort("sentence_rank")
        )
        assert ranked["sentence_rank"].to_list() == list(range(1, k + 1))
        chosen = ranked["sentence"].to_list()
        # The r-th kept sentence has the r-th largest peak (peaks that tie to float rounding may swap).
        np.testing.assert_allclose([keys[row] for row in chosen], [keys[row] for row in best], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(ranked["peak_activation"], [peaks[row] for row in chosen], rtol=1e-4, atol=1e-6)
        for row in ranked["sentence"].to_list():
            tokens = rows.filter(pl.col("sentence") == row).sort("position")
            acts, special = alone[row]
            np.testing.assert_allclose(
                tokens["activation"].to_numpy(), acts[layer, :, neuron].numpy(), rtol=1e-4, atol=1e-6
            )
            assert "".join(tokens["text"].to_list()) == SENTENCES[row]
            assert tokens["last"].to_list() == [False] * (tokens.height - 1) + [True]
            assert tokens["special"].to_list() == special.tolist()
            assert tokens["last_activation"][0] == pytest.approx(
                float(last_states[layer, row, neuron]), rel=1e-4, abs=1e-6
            )


# --- a tiny end-to-end site --------------------------------------------------------------------------

LANGUAGES = ["ja", "nl"]
DETECTORS = ["centroid", "correlation"]
MAIN_LABEL = "4"
MAX_PAGES = 6


def synthetic_scores(n_layers: int, d_mlp: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A score table and top-N lists as ``score_neurons`` writes them; every call shares most of its
    ranking with the others (one underlying score plus noise of ``seed``), as languages' lists do."""
    shared = np.random.default_rng(0).normal(size=(n_layers, 2, d_mlp))
    noise = np.random.default_rng(seed).normal(size=shared.shape)
    ranked = rank_candidates(score_table(shared + 0.6 * noise), 0.5, n_layers)
    return ranked, top_n_lists(ranked, [int(MAIN_LABEL), 8])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny model's dumps, token pass, lens and profiles, and synthetic score tables: every input of the site."""
    root = tmp_path_factory.mktemp("browser")
    torch.set_num_threads(1)
    save_tiny_model("gemma3", root / "model")
    manifest = root / "resources/manifest.json"
    prepare_model("tiny", {"path": str(root / "model")}, manifest.parent)
    sources = {"ja": TOKENIZER_TEXT[3], "nl": TOKENIZER_TEXT[2]}
    results = root / "results"
    paths = {"tops": [], "scores": [], "tokens": [], "tests": {}, "trains": {}}
    for index, lang in enumerate(LANGUAGES):
        english = [*TOKENIZER_TEXT[:2], TOKENIZER_TEXT[5], "Where is the cat?", "The sofa is here."]
        target = [sources[lang], HOSTILE if lang == "ja" else "Waar is de kat?", *TOKENIZER_TEXT[6:9]]
        corpus = pl.DataFrame({
            "language": lang, "id": [f"p{row}" for row in range(10)], "split": ["train"] * 5 + ["test"] * 5,
            "pivot_text": english + english[::-1], "target_text": target + target[::-1],
        })  # fmt: skip
        corpus.write_parquet(root / f"{lang}.corpus.parquet")
        for split in ("train", "test"):
            directory = results / f"activations/{lang}/{split}"
            pairs = directory.with_suffix(".pairs.parquet")
            dump_split(manifest, root / f"{lang}.corpus.parquet", split, directory, pairs, batch_size=4,
                       max_batch_tokens=None, max_tokens=None, device="cpu")  # fmt: skip
            paths[f"{split}s"][lang] = directory
        for position, detector in enumerate(DETECTORS):
            scores, top = synthetic_scores(4, 48, seed=1 + 10 * index + position)
            labels = {"model": "tiny", "language": lang, "detector": detector}
            for name, table in (("scores", scores), ("tops", top)):
                path = results / f"{name}/{detector}/{lang}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                labelled(table, **labels).write_parquet(path)
                paths[name].append(path)
    for lang in LANGUAGES:
        path = results / f"browser/tokens/{lang}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        run_neuron_tokens(manifest, results / f"activations/{lang}/test.pairs.parquet", paths["tops"], language=lang,
                          pivot="en", main_label=MAIN_LABEL, settings=TokenSettings(3, batch_size=2), device="cpu",
                          model_name="tiny").write_parquet(path)  # fmt: skip
        paths["tokens"].append(path)
    paths["lens"] = results / "browser/lens.parquet"
    run_neuron_lens(manifest, paths["tops"], main_label=MAIN_LABEL, n_tokens=5, device="cpu",
                    model_name="tiny").write_parquet(paths["lens"])  # fmt: skip
    paths["profiles"] = results / "browser/profiles.parquet"
    run_neuron_profiles(paths["tests"], paths["trains"], paths["tops"], pivot="en", main_label=MAIN_LABEL,
                        model_name="tiny").write_parquet(paths["profiles"])  # fmt: skip
    neurons = selected_neurons(paths["tops"], MAIN_LABEL)
    paths["lape"] = results / "lape/neurons.parquet"
    paths["lape"].parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"model": "tiny", "language": ["en", "ja", "nl", "ja"], "layer": neurons["layer"][:4],
                  "neuron": neurons["neuron"][:4]}).write_parquet(paths["lape"])  # fmt: skip
    paths["specificity"] = results / "evaluation/specificity.parquet"
    paths["specificity"].parent.mkdir(parents=True, exist_ok=True)
    eta = [
        pl.read_parquet(path).filter(pl.col("top_n_label") == MAIN_LABEL) for path in paths["tops"][:: len(DETECTORS)]
    ]
    pl.concat(eta).select("language", "neuron_type", "layer", "neuron").with_columns(
        pl.lit("language").alias("grouping"), (pl.col("neuron") / 100.0).alias("eta_squared")
    ).write_parquet(paths["specificity"])
    paths["site"] = root / "reports/neurons/tiny"
    paths["written"] = build_neuron_browser(
        paths["site"], model="tiny", languages=LANGUAGES,
        settings=BrowserSettings(main_label=MAIN_LABEL, max_pages=MAX_PAGES), top_lists=paths["tops"],
        scores=paths["scores"], tokens=paths["tokens"], lens=paths["lens"], profiles=paths["profiles"],
        lape=paths["lape"], specificity=paths["specificity"],
    )  # fmt: skip
    paths["manifest"] = manifest
    return paths


def test_token_table_has_both_sides_of_every_language(tiny_run):
    neurons = selected_neurons(tiny_run["tops"], MAIN_LABEL)
    for path, lang in zip(tiny_run["tokens"], LANGUAGES, strict=True):
        table = pl.read_parquet(path)
        assert set(table["text_language"].unique()) == {"en", lang}
        per_neuron = table.group_by("layer", "neuron", "side").agg(pl.col("sentence_rank").max())
        assert per_neuron.height == 2 * neurons.height and set(per_neuron["sentence_rank"]) == {3}
        pairs = pl.read_parquet(tiny_run["tests"][lang].with_suffix(".pairs.parquet")).filter(pl.col("kept"))
        sentences = (
            table.filter(pl.col("side") == "target").group_by("layer", "neuron", "id").agg(pl.col("text").str.join(""))
        )
        texts = dict(zip(pairs["id"], pairs["target_text"], strict=True))
        assert all(texts[pair_id] == text for pair_id, text in sentences.select("id", "text").rows())


def test_profiles_hold_the_dumps_last_token_means_and_lape_entropy(tiny_run):
    profiles = pl.read_parquet(tiny_run["profiles"])
    row = profiles.filter(pl.col("text_language") == "nl").row(0, named=True)
    dump = Dump(tiny_run["tests"]["nl"] / "target")
    expected = dump.layer("neuron_activations", row["layer"])[:, row["neuron"]].mean()
    assert row["mean_activation"] == pytest.approx(float(expected), rel=1e-6)
    neuron_rows = profiles.filter((pl.col("layer") == row["layer"]) & (pl.col("neuron") == row["neuron"]))
    english = neuron_rows.filter(pl.col("text_language") == "en").row(0, named=True)
    pivot = Dump(tiny_run["tests"]["ja"] / "pivot")  # English: the first language's pairs
    expected = pivot.layer("neuron_activations", row["layer"])[:, row["neuron"]].mean()
    assert english["mean_activation"] == pytest.approx(float(expected), rel=1e-6)
    # LAPE entropy by hand: English counts are summed over every language's English side.
    probabilities = []
    for lang in ["en", *LANGUAGES]:
        sides = (
            [tiny_run["trains"][other] / "pivot" for other in LANGUAGES]
            if lang == "en"
            else [tiny_run["trains"][lang] / "target"]
        )
        counts = sum(Dump(side).active_counts()[0][row["layer"], row["neuron"]] for side in sides)
        tokens = sum(Dump(side).active_counts()[1] for side in sides)
        probabilities.append(counts / tokens)
    shares = np.array(probabilities) / sum(probabilities)
    entropy = -sum(p * math.log(p) for p in shares if p > 0)
    assert row["lape_entropy"] == pytest.approx(entropy, rel=1e-5)
    np.testing.assert_allclose(
        neuron_rows.sort(pl.col("text_language").replace_strict({"en": 0, "ja": 1, "nl": 2}))["lape_probability"],
        probabilities,
        rtol=1e-6,
    )


# --- the site generator on synthetic tables ------------------------------------------------------------


def synthetic_data(model: str = "tiny", sentence: str = "plain words") -> BrowserData:
    """Five neurons in two languages' lists; one sentence (with its tokens) per neuron and side."""
    top = pl.DataFrame(
        {"detector": "centroid", "language": ["ja", "ja", "ja", "nl", "nl", "nl"],
         "neuron_type": ["type1", "type1", "type2", "type1", "type1", "type2"],
         "layer": [0, 0, 3, 0, 1, 3], "neuron": [5, 9, 2, 5, 4, 7], "score": [0.5, 0.4, 0.3, 0.6, 0.2, 0.1],
         "rank": [1, 2, 1, 1, 2, 1]},
        schema_overrides={"layer": pl.Int32, "neuron": pl.Int32, "rank": pl.Int32},
    )  # fmt: skip
    neurons = top.select("layer", "neuron", "neuron_type").unique()
    unlisted = [
        neurons.with_columns(pl.lit("centroid").alias("detector"), pl.lit(lang).alias("language"),
                             pl.lit(0.1).alias("score"), pl.lit(7, dtype=pl.Int32).alias("rank"))
        for lang in ("ja", "nl")
    ]  # fmt: skip
    scores = pl.concat(unlisted).update(top, on=["detector", "language", "layer", "neuron"])
    pieces = ["<bos>", *re.findall(r"\S+\s*|\s+", sentence)]
    tokens = pl.concat(
        pl.DataFrame(
            {
                "language": lang,
                "text_language": text_language,
                "id": f"{lang}-1",
                "layer": layer,
                "neuron": neuron,
                "sentence_rank": 1,
                "peak_activation": 2.0,
                "ranked_by": "max",
                "last_activation": -1.0,
                "position": list(range(len(pieces))),
                "token": pieces,
                "text": ["", *pieces[1:]],
                "special": [True] + [False] * (len(pieces) - 1),
                "last": [False] * (len(pieces) - 1) + [True],
                "activation": np.linspace(-1.0, 2.0, len(pieces)),
            },
            schema_overrides={"layer": pl.Int32, "neuron": pl.Int32},
        )  # fmt: skip
        for layer, neuron in neurons.select("layer", "neuron").rows()
        for lang in ("ja", "nl")
        for text_language in ("en", lang)
    )
    lens = pl.concat(
        pl.DataFrame(
            {
                "layer": layer,
                "neuron": neuron,
                "direction": direction,
                "rank": [1, 2],
                "token_id": [3, 4],
                "token": [sentence, "▁x"],
                "text": [sentence, " x"],
                "logit": [2.0, 1.0] if direction == "promoted" else [-2.0, -1.0],
            },
            schema_overrides={"layer": pl.Int32, "neuron": pl.Int32},
        )  # fmt: skip
        for layer, neuron in neurons.select("layer", "neuron").rows()
        for direction in ("promoted", "suppressed")
    )
    profiles = pl.concat(
        neurons.select("layer", "neuron").with_columns(
            pl.lit(lang).alias("text_language"),
            pl.lit(value).alias("mean_activation"),
            pl.lit(0.3).alias("lape_probability"),
            pl.lit(1.0).alias("lape_entropy"),
        )  # fmt: skip
        for lang, value in (("en", 0.5), ("ja", -0.25), ("nl", 1.5))
    )
    lape = pl.DataFrame(
        {"language": ["ja"], "layer": [3], "neuron": [2]}, schema_overrides={"layer": pl.Int32, "neuron": pl.Int32}
    )
    specificity = pl.DataFrame({"language": ["ja"], "layer": [0], "neuron": [5], "eta_squared": [0.25]},
                               schema_overrides={"layer": pl.Int32, "neuron": pl.Int32})  # fmt: skip
    return BrowserData(model, ["ja", "nl"], top, scores, lape, specificity, profiles, tokens, lens)


class TextOf(HTMLParser):
    """Collects the text inside elements of one class, and the tags that open scripts."""

    def __init__(self, css_class: str) -> None:
        super().__init__()
        self.css_class, self.depth, self.texts, self.scripts = css_class, 0, [], 0

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.scripts += 1
        classes = (dict(attrs).get("class") or "").split()
        if self.depth:
            self.depth += 1
        elif self.css_class in classes:
            self.depth, self.texts = 1, [*self.texts, ""]

    def handle_endtag(self, tag):
        if self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.texts[-1] += data


def test_index_lists_every_entry_and_pages_follow_the_cap(tmp_path):
    data = synthetic_data()
    for max_pages, expected in ((None, 5), (2, 2), (0, 0)):
        site = tmp_path / f"cap-{max_pages}"
        written = write_site(data, site, BrowserSettings(main_label="4", max_pages=max_pages))
        pages = sorted(path.name for path in (site / "n").iterdir())
        assert written["pages"] == len(pages) == expected and written["rows"] == data.top.height
        index = (site / "index.html").read_text(encoding="utf-8")
        assert index.count("<tr data-type=") == data.top.height
        links = set(re.findall(r"href='n/([0-9_]+\.html)'", index))
        assert links == set(pages)
        assert index.count("class='nopage'") == sum(
            1 for layer, neuron in data.top.select("layer", "neuron").rows() if f"{layer}_{neuron}.html" not in pages
        )
    # With a cap of 2: the best rank first, then neurons listed in more languages (0.5 is in both lists).
    assert pages_with_cap(data, 2) == [(0, 5), (3, 2)]


def pages_with_cap(data: BrowserData, cap: int) -> list[tuple[int, int]]:
    return page_neurons(index_rows(data), cap).select("layer", "neuron").rows()


def test_index_rows_count_languages_lape_and_eta():
    rows = index_rows(synthetic_data())
    shared = rows.filter((pl.col("layer") == 0) & (pl.col("neuron") == 5))
    assert shared["n_languages"].to_list() == [2, 2]
    assert shared.filter(pl.col("language") == "ja")["eta_squared"].to_list() == [0.25]
    assert shared.filter(pl.col("language") == "nl")["eta_squared"].to_list() == [None]
    assert rows.filter(pl.col("neuron") == 2)["lape"].to_list() == ["ja"]


def test_overlap_counts_and_layer_neighbours():
    data = synthetic_data()
    counts = overlap_counts(data.top, ["ja", "nl"])
    assert counts[("centroid", "type1")] == [[2, 1], [1, 2]]
    assert counts[("centroid", "type2")] == [[1, 0], [0, 1]]
    neighbours = layer_neighbours(page_neurons(index_rows(data), None))
    assert neighbours[(0, 5)] == (None, (0, 9)) and neighbours[(0, 9)] == ((0, 5), None)
    assert neighbours[(3, 2)] == (None, (3, 7))


def test_hostile_text_is_escaped_everywhere(tmp_path):
    data = synthetic_data(model='<img src=x onerror="alert(1)">', sentence=HOSTILE)
    write_site(data, tmp_path, BrowserSettings(main_label="4", max_pages=None))
    page = (tmp_path / "n" / "0_5.html").read_text(encoding="utf-8")
    for text in (page, (tmp_path / "index.html").read_text(encoding="utf-8")):
        assert "<script>alert" not in text and "<img src=x" not in text and "<b>bold" not in text
    sentences = TextOf("sentence")
    sentences.feed(page)
    assert sentences.scripts == 1  # the page's own script, nothing the data brought in
    assert sentences.texts and all(text.startswith("<bos>" + HOSTILE) for text in sentences.texts)
    lens = TextOf("token")
    lens.feed(page)
    assert repr(HOSTILE) in lens.texts


def test_settings_refuse_a_negative_cap():
    with pytest.raises(ValueError, match="max_pages"):
        BrowserSettings(main_label="4", max_pages=-1)


# --- the site in a real browser ------------------------------------------------------------------------


def test_site_works_in_chromium(tiny_run, chromium):
    from playwright.sync_api import sync_playwright

    site = tiny_run["site"]
    pages = sorted((site / "n").iterdir())
    assert len(pages) == tiny_run["written"]["pages"] == MAX_PAGES
    console_errors, failed_requests, links = [], [], {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: console_errors.append(str(error)))
        page.on("requestfailed", lambda request: failed_requests.append(request.url))

        page.goto((site / "index.html").as_uri(), wait_until="load")
        links[site / "index.html"] = page.eval_on_selector_all(
            "a[href]", "nodes => nodes.map(n => n.getAttribute('href'))"
        )
        rows = "#neuron-table tbody tr"
        total = page.locator(rows).count()
        assert total == sum(
            pl.read_parquet(path).filter(pl.col("top_n_label") == MAIN_LABEL).height for path in tiny_run["tops"]
        )
        rank_column = 7  # 0-based: neuron, layer, index, type, language, detector, score, rank
        read_ranks = f"[...document.querySelectorAll('{rows}')].map(r => parseFloat(r.cells[{rank_column}].dataset.v))"
        before = page.evaluate(read_ranks)
        page.click("#neuron-table th:nth-child(8)")
        ascending = page.evaluate(read_ranks)
        assert ascending == sorted(before) and ascending != before
        page.click("#neuron-table th:nth-child(8)")
        assert page.evaluate(read_ranks) == sorted(before, reverse=True)
        page.select_option("select[name=language]", "nl")
        visible = page.eval_on_selector_all(rows, "rs => rs.filter(r => !r.hidden).map(r => r.dataset.language)")
        assert visible and set(visible) == {"nl"} and len(visible) < total
        page.fill("input[name=q]", "Type-2")
        narrowed = page.eval_on_selector_all(rows, "rs => rs.filter(r => !r.hidden).map(r => r.cells[3].textContent)")
        assert narrowed and set(narrowed) == {"Type-2"} and len(narrowed) < len(visible)
        assert f"{len(narrowed)} of {total} rows shown" in page.inner_text("#row-count")
        # One matrix per detector and type, each languages x languages cells; one bar per count of languages.
        assert page.locator("#overlap rect.cell").count() == len(DETECTORS) * 2 * len(LANGUAGES) ** 2
        assert page.locator("#overlap rect.bar").count() == len(DETECTORS) * 2 * len(LANGUAGES)

        for neuron_page in pages[:2]:
            page.goto(neuron_page.as_uri(), wait_until="load")
            links[neuron_page] = page.eval_on_selector_all("a[href]", "nodes => nodes.map(n => n.getAttribute('href'))")
            assert page.locator("#activation svg rect.bar").count() == 1 + len(LANGUAGES)
            assert page.locator("#sentences .sentence").count() == 3 * (1 + len(LANGUAGES))
            assert page.locator("#sentences .sentence .tok.last").count() == 3 * (1 + len(LANGUAGES))
            assert page.locator("#lens tbody tr").count() == 2 * 5
        page.screenshot(path=str(site.parent / "neuron-page.png"), full_page=True)
        browser.close()

    assert not console_errors, console_errors
    assert not failed_requests, failed_requests
    for source, hrefs in links.items():
        assert hrefs, f"{source} has no links"
        for href in hrefs:
            assert (source.parent / href).is_file(), f"{source.name}: link {href} points nowhere"
    hostile_page = next(iter(pages))
    assert "<script>alert" not in hostile_page.read_text(encoding="utf-8")
