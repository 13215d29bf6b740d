rule centroids:
    """Type-1 (shared) and Type-2 (L2) centroids per layer, from the training split."""
    input:
        train="results/{model}/activations/{lang}/train",
    output:
        centroids="results/{model}/centroids/{lang}.safetensors",
    log:
        "logs/centroids/{model}/{lang}.log",
    conda:
        "../envs/model.yaml"
    resources:
        mem_mb=config["resources"]["model_mem_mb"],
        runtime=30,
    params:
        last_layer=LAST_LAYER,
    script:
        "../scripts/centroids.py"


rule score_neurons:
    """Score every MLP neuron against both centroids; rank candidates; list the top N."""
    input:
        manifest="resources/models/{model}/manifest.json",
        train="results/{model}/activations/{lang}/train",
        centroids="results/{model}/centroids/{lang}.safetensors",
    output:
        scores="results/{model}/scores/{detector}/{lang}.parquet",
        top="results/{model}/neurons/{detector}/{lang}.parquet",
    log:
        "logs/score_neurons/{model}/{detector}/{lang}.log",
    benchmark:
        "logs/benchmarks/score_neurons/{model}/{detector}/{lang}.tsv"
    conda:
        "../envs/model.yaml"
    resources:
        mem_mb=config["resources"]["model_mem_mb"],
        runtime=60,
    params:
        type1_fraction=config["detection"]["type1_fraction"],
        top_n_sweep=config["detection"]["top_n_sweep"],
    script:
        "../scripts/score_neurons.py"


rule write_magnitudes:
    """How much each neuron writes (mean |activation| x |write vector|) over the L2 training sentences."""
    input:
        manifest="resources/models/{model}/manifest.json",
        train="results/{model}/activations/{lang}/train",
    output:
        magnitudes="results/{model}/magnitudes/{lang}.parquet",
    log:
        "logs/write_magnitudes/{model}/{lang}.log",
    conda:
        "../envs/model.yaml"
    resources:
        mem_mb=config["resources"]["model_mem_mb"],
        runtime=30,
    script:
        "../scripts/write_magnitudes.py"


rule lape:
    """LAPE language-specific neurons of every language, from activation counts over all tokens."""
    input:
        trains=expand("results/{{model}}/activations/{lang}/train", lang=LANGUAGES),
        pivot_train=f"results/{{model}}/activations/{PIVOT}/train",
    output:
        neurons="results/{model}/lape/neurons.parquet",
    log:
        "logs/lape/{model}.log",
    conda:
        "../envs/model.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        pivot=config["pivot_language"],
        languages=LANGUAGES,
        settings=LAPE_SETTINGS,
    script:
        "../scripts/lape.py"


rule lape_overlap:
    """Overlap of each language's LAPE neurons with its Type-1 and Type-2 top-N, per layer."""
    input:
        manifest="resources/models/{model}/manifest.json",
        lape="results/{model}/lape/neurons.parquet",
        tops=expand(
            "results/{{model}}/neurons/{detector}/{lang}.parquet",
            detector=EVALUATION["detector"],
            lang=LANGUAGES,
        ),
    output:
        overlap="results/{model}/lape/overlap.parquet",
    log:
        "logs/lape_overlap/{model}.log",
    conda:
        "../envs/report.yaml"
    params:
        main_label=config["detection"]["top_n"],
        languages=LANGUAGES,
    script:
        "../scripts/lape_overlap.py"


rule detector_agreement:
    """Overlap of the reference detector's top-N lists with every other detector's, per layer."""
    input:
        unpack(top_lists_by_detector),
    output:
        table="results/{model}/evaluation/detector_agreement.parquet",
    log:
        "logs/detector_agreement/{model}.log",
    conda:
        "../envs/report.yaml"
    params:
        reference=EVALUATION["detector"],
        detectors=DETECTORS,
        languages=LANGUAGES,
    script:
        "../scripts/detector_agreement.py"
