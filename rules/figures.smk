rule figure_detection:
    """One detection figure of the registry (scope "detector") for one model and detector."""
    input:
        unpack(figure_inputs),
    output:
        png=report(
            "reports/figures/{model}/{detector}/{figure}.png",
            caption="../reports/workflow/figure.rst",
            category=lambda wildcards: figure_category(wildcards.figure),
            subcategory="{model}",
            labels=lambda wildcards: figure_labels(
                wildcards.figure, wildcards.detector
            ),
        ),
        spec="reports/figures/{model}/{detector}/{figure}.vl.json",
    log:
        "logs/figures/{model}/{detector}/{figure}.log",
    wildcard_constraints:
        figure="|".join(DETECTOR_FIGURES),
    conda:
        "../envs/report.yaml"
    params:
        settings=FIGURE_SETTINGS,
        results=figure_results,
        caption=lambda wildcards: figure_caption(wildcards.figure),
    script:
        "../scripts/figure.py"


rule figure_evaluation:
    """One evaluation figure of the registry (scope "model") for one model."""
    input:
        unpack(figure_inputs),
    output:
        png=report(
            "reports/figures/{model}/evaluation/{figure}.png",
            caption="../reports/workflow/figure.rst",
            category=lambda wildcards: figure_category(wildcards.figure),
            subcategory="{model}",
            labels=lambda wildcards: figure_labels(wildcards.figure),
        ),
        spec="reports/figures/{model}/evaluation/{figure}.vl.json",
    log:
        "logs/figures/{model}/evaluation/{figure}.log",
    wildcard_constraints:
        figure="|".join(EVALUATION_FIGURES),
    conda:
        "../envs/report.yaml"
    params:
        settings=FIGURE_SETTINGS,
        results=figure_results,
        caption=lambda wildcards: figure_caption(wildcards.figure),
    script:
        "../scripts/figure.py"
