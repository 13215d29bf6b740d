rule figure_evaluation:
    """One evaluation figure (any name in FIGURE_INPUTS) of one model."""
    input:
        unpack(evaluation_figure_inputs),
    output:
        png=report(
            "reports/figures/{model}/evaluation/{figure}.png",
            caption="../reports/captions/evaluation.rst",
            category="Evaluation",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "{figure}"},
        ),
        spec="reports/figures/{model}/evaluation/{figure}.vl.json",
    log:
        "logs/figures/{model}/evaluation/{figure}.log",
    wildcard_constraints:
        figure="|".join(FIGURE_INPUTS),
    conda:
        "../envs/transfer-neurons.yaml"
    params:
        settings=FIGURE_SETTINGS,
    script:
        "../scripts/figure_evaluation.py"


rule summary_tables:
    """The numbers the report quotes, as CSV tables."""
    input:
        unpack(model_results),
    output:
        tables=expand(
            "reports/tables/{{model}}/{table}.csv", table=report_table_names()
        ),
    log:
        "logs/summary_tables/{model}.log",
    conda:
        "../envs/transfer-neurons.yaml"
    params:
        settings=FIGURE_SETTINGS,
    script:
        "../scripts/summary_tables.py"


rule report_html:
    """One HTML page with every figure, its caption and the measured numbers."""
    input:
        detection=detection_figures(),
        evaluation=[png for model in MODELS for png in evaluation_figures(model)],
        tables=expand(
            "reports/tables/{model}/{table}.csv",
            model=MODELS,
            table=report_table_names(),
        ),
    output:
        html="reports/report.html",
    log:
        "logs/report_html.log",
    conda:
        "../envs/transfer-neurons.yaml"
    params:
        models=MODELS,
        tables=report_table_names(),
        knn_metric=FIGURE_SETTINGS["knn_metric"],
    script:
        "../scripts/report_html.py"
