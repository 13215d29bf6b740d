# The neuron browser: a static site of every transfer neuron (reports/neurons/{model}/), evaluation.browser.
NEURON_BROWSER = EVALUATION["browser"]


# Every detector's top-N lists of every language: the neurons the browser shows.
EVERY_TOP_LIST = expand(
    "results/{{model}}/neurons/{detector}/{lang}.parquet",
    detector=DETECTORS,
    lang=LANGUAGES,
)


rule neuron_tokens:
    """The browsed neurons' top test sentences of one language (both sides), token by token."""
    input:
        manifest="resources/models/{model}/manifest.json",
        pairs="results/{model}/activations/{lang}/test.pairs.parquet",
        tops=EVERY_TOP_LIST,
    output:
        tokens="results/{model}/browser/tokens/{lang}.parquet",
    log:
        "logs/neuron_tokens/{model}/{lang}.log",
    benchmark:
        "logs/benchmarks/neuron_tokens/{model}/{lang}.tsv"
    conda:
        "../envs/model.yaml"
    threads: config["runtime"]["threads"]
    resources:
        mem_mb=config["resources"]["model_mem_mb"],
        runtime=config["resources"]["model_runtime_min"],
        gpu=config["resources"]["gpus"],
    params:
        settings={
            "top_sentences": NEURON_BROWSER["top_sentences"],
            "rank_by": NEURON_BROWSER["rank_by"],
            "batch_size": config["runtime"]["batch_size"],
            "max_batch_tokens": config["runtime"]["max_batch_tokens"],
        },
        pivot=config["pivot_language"],
        main_label=config["detection"]["top_n"],
        runtime=MODEL_RUNTIME,
    script:
        "../scripts/neuron_tokens.py"


rule neuron_lens:
    """The tokens each browsed neuron's write vector promotes and suppresses (final norm, unembedding)."""
    input:
        manifest="resources/models/{model}/manifest.json",
        tops=EVERY_TOP_LIST,
    output:
        lens="results/{model}/browser/lens.parquet",
    log:
        "logs/neuron_lens/{model}.log",
    benchmark:
        "logs/benchmarks/neuron_lens/{model}.tsv"
    conda:
        "../envs/model.yaml"
    threads: config["runtime"]["threads"]
    resources:
        mem_mb=config["resources"]["model_mem_mb"],
        runtime=config["resources"]["model_runtime_min"],
        gpu=config["resources"]["gpus"],
    params:
        main_label=config["detection"]["top_n"],
        lens_tokens=NEURON_BROWSER["lens_tokens"],
        runtime=MODEL_RUNTIME,
    script:
        "../scripts/neuron_lens.py"


rule neuron_profiles:
    """Each browsed neuron's mean last-token activation (test dumps) and LAPE profile per language."""
    input:
        tests=expand("results/{{model}}/activations/{lang}/test", lang=LANGUAGES),
        trains=expand("results/{{model}}/activations/{lang}/train", lang=LANGUAGES),
        pivot_train=f"results/{{model}}/activations/{PIVOT}/train",
        tops=EVERY_TOP_LIST,
    output:
        profiles="results/{model}/browser/profiles.parquet",
    log:
        "logs/neuron_profiles/{model}.log",
    conda:
        "../envs/model.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        languages=LANGUAGES,
        pivot=config["pivot_language"],
        main_label=config["detection"]["top_n"],
    script:
        "../scripts/neuron_profiles.py"


rule neuron_browser:
    """The static neuron browser: an index of every top-N neuron and a page per browsed neuron."""
    input:
        tops=EVERY_TOP_LIST,
        scores=expand(
            "results/{{model}}/scores/{detector}/{lang}.parquet",
            detector=DETECTORS,
            lang=LANGUAGES,
        ),
        specificity="results/{model}/evaluation/specificity.parquet",
        lape=(
            "results/{model}/lape/neurons.parquet"
            if config["detection"]["lape"]["enabled"]
            else []
        ),
        tokens=expand("results/{{model}}/browser/tokens/{lang}.parquet", lang=LANGUAGES),
        lens="results/{model}/browser/lens.parquet",
        profiles="results/{model}/browser/profiles.parquet",
    output:
        site=report(
            directory("reports/neurons/{model}"),
            htmlindex="index.html",
            caption="../reports/workflow/browser.rst",
            category=BROWSER_CATEGORY,
            subcategory="{model}",
            labels=report_labels("neuron browser", "HTML"),
        ),
    log:
        "logs/neuron_browser/{model}.log",
    conda:
        "../envs/report.yaml"
    params:
        languages=LANGUAGES,
        settings={
            "main_label": str(config["detection"]["top_n"]),
            "pivot": config["pivot_language"],
            "max_pages": NEURON_BROWSER["max_pages"],
        },
    script:
        "../scripts/neuron_browser.py"
