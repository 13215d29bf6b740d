rule dump_pivot_activations:
    """The pivot (English) side of one split, once: the distinct English sentences of every language's pairs."""
    input:
        manifest="resources/models/{model}/manifest.json",
        corpora=expand("results/corpus/{lang}.parquet", lang=LANGUAGES),
    output:
        dump=directory(f"results/{{model}}/activations/{PIVOT}/{{split}}"),
        sentences=f"results/{{model}}/activations/{PIVOT}/{{split}}.sentences.parquet",
    log:
        "logs/dump_pivot_activations/{model}/{split}.log",
    benchmark:
        "logs/benchmarks/dump_pivot_activations/{model}/{split}.tsv"
    conda:
        "../envs/model.yaml"
    threads: config["runtime"]["threads"]
    resources:
        mem_mb=config["resources"]["model_mem_mb"],
        runtime=config["resources"]["model_runtime_min"],
        gpu=config["resources"]["gpus"],
    params:
        batch_size=config["runtime"]["batch_size"],
        max_batch_tokens=config["runtime"]["max_batch_tokens"],
        max_tokens=config["runtime"]["max_tokens"],
        runtime=MODEL_RUNTIME,
    script:
        "../scripts/dump_pivot_activations.py"


rule dump_activations:
    """Last-token states and MLP activations of every layer, for one split (English rows copied)."""
    input:
        manifest="resources/models/{model}/manifest.json",
        corpus="results/corpus/{lang}.parquet",
        # ancient: the pivot dump is redone when any language's corpus changes; a language whose own
        # corpus did not change keeps the English rows it copied (its sentences' states, equal up to
        # the rounding of other batch-mates), so that one language's new data reruns only its own jobs.
        pivot_dump=ancient(f"results/{{model}}/activations/{PIVOT}/{{split}}"),
        pivot_sentences=ancient(
            f"results/{{model}}/activations/{PIVOT}/{{split}}.sentences.parquet"
        ),
    output:
        dump=directory("results/{model}/activations/{lang}/{split}"),
        pairs="results/{model}/activations/{lang}/{split}.pairs.parquet",
    log:
        "logs/dump_activations/{model}/{lang}/{split}.log",
    benchmark:
        "logs/benchmarks/dump_activations/{model}/{lang}/{split}.tsv"
    conda:
        "../envs/model.yaml"
    threads: config["runtime"]["threads"]
    resources:
        mem_mb=config["resources"]["model_mem_mb"],
        runtime=config["resources"]["model_runtime_min"],
        gpu=config["resources"]["gpus"],
    params:
        batch_size=config["runtime"]["batch_size"],
        max_batch_tokens=config["runtime"]["max_batch_tokens"],
        max_tokens=config["runtime"]["max_tokens"],
        runtime=MODEL_RUNTIME,
    script:
        "../scripts/dump_activations.py"
