rule figure_layer_distribution:
    """Where the top-N Type-1 and Type-2 neurons sit, per language."""
    input:
        top=expand(
            "results/{{model}}/neurons/{{detector}}/{lang}.parquet", lang=LANGUAGES
        ),
        manifest="resources/models/{model}/manifest.json",
    output:
        png=report(
            "reports/figures/{model}/{detector}/layer_distribution.png",
            caption="../reports/captions/layer_distribution.rst",
            category="Detection",
            subcategory="{model}",
            labels={
                "model": "{model}",
                "detector": "{detector}",
                "figure": "layer distribution",
            },
        ),
        spec="reports/figures/{model}/{detector}/layer_distribution.vl.json",
    log:
        "logs/figures/{model}/{detector}/layer_distribution.log",
    conda:
        "../envs/transfer-neurons.yaml"
    params:
        top_n=config["detection"]["top_n"],
    script:
        "../scripts/figure_layer_distribution.py"


rule figure_score_profile:
    """Per-layer profile of the highest neuron scores, per language and type."""
    input:
        scores=expand(
            "results/{{model}}/scores/{{detector}}/{lang}.parquet", lang=LANGUAGES
        ),
    output:
        png=report(
            "reports/figures/{model}/{detector}/score_profile.png",
            caption="../reports/captions/score_profile.rst",
            category="Detection",
            subcategory="{model}",
            labels={
                "model": "{model}",
                "detector": "{detector}",
                "figure": "score profile",
            },
        ),
        spec="reports/figures/{model}/{detector}/score_profile.vl.json",
    log:
        "logs/figures/{model}/{detector}/score_profile.log",
    conda:
        "../envs/transfer-neurons.yaml"
    script:
        "../scripts/figure_score_profile.py"
