"""Rule language_space: centroid similarities of all languages, a 2-D PCA and the SVD dimensionality."""

from transfer_neurons.evaluation.language_space import (
    decoder_layer_count,
    open_language_states,
    pca_layers,
    run_language_space,
)
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    params, inputs = snakemake.params, snakemake.input
    languages, space = params.languages, params.space
    by_language = {
        name: dict(zip(languages, inputs[name], strict=True)) if name in inputs.keys() else None
        for name in ("tests", "arrays")
    }
    source = open_language_states(
        space["sentences"],
        pivot=params.pivot,
        embedding=space["embedding"],
        last_layer=params.last_layer,
        english_dump=inputs.get("english"),
        target_dumps=by_language["tests"],
        centroid_arrays=by_language["arrays"],
        states=inputs.get("states"),
    )
    layers = pca_layers(
        space["pca_layers"],
        decoder_layer_count(source),
        depths=space["pca_depths"],
        type1_fraction=params.type1_fraction,
    )
    similarity, pca, svd = run_language_space(
        source,
        conditions=space["conditions"],
        pca_layer_list=layers,
        pca_conditions=space["pca_conditions"],
        svd_thresholds=space["svd_thresholds"],
        labels={"model": snakemake.wildcards.model},
    )
    similarity.write_parquet(snakemake.output.similarity)
    pca.write_parquet(snakemake.output.pca)
    svd.write_parquet(snakemake.output.svd)
