rule prepare_model:
    """Fetch or convert a configured model into a local directory and write its manifest."""
    input:
        model_local_files,
    output:
        manifest="resources/models/{model}/manifest.json",
    log:
        "logs/prepare_model/{model}.log",
    benchmark:
        "logs/benchmarks/prepare_model/{model}.tsv"
    conda:
        "../envs/model.yaml"
    resources:
        mem_mb=config["resources"]["model_mem_mb"],
        runtime=60,
    params:
        spec=model_spec,
    script:
        "../scripts/prepare_model.py"
