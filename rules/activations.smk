rule dump_activations:
    """Last-token residual streams and MLP activations of every layer, for one split."""
    input:
        manifest="resources/models/{model}/manifest.json",
        corpus="results/corpus/{lang}.parquet",
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
