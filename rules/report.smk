rule summary_tables:
    """The numbers the report quotes, as CSV tables (the table registry)."""
    input:
        unpack(summary_table_inputs),
        manifest="resources/models/{model}/manifest.json",
    output:
        tables=expand(
            "reports/tables/{{model}}/{table}.csv", table=[*SUMMARY_TABLES, "claims"]
        ),
    log:
        "logs/summary_tables/{model}.log",
    conda:
        "../envs/transfer-neurons.yaml"
    params:
        settings=FIGURE_SETTINGS,
        results=table_inputs(SUMMARY_TABLES),
    script:
        "../scripts/summary_tables.py"


rule report_html:
    """One HTML page: the paper's claims with verdicts, every figure with its numbers, provenance."""
    input:
        figures=[png for model in MODELS for png in model_figures(model)],
        specs=[
            png.replace(".png", ".vl.json")
            for model in MODELS
            for png in model_figures(model)
        ],
        tables=expand(
            "reports/tables/{model}/{table}.csv",
            model=MODELS,
            table=[*SUMMARY_TABLES, "claims"],
        ),
        manifests=expand(rules.prepare_model.output.manifest, model=MODELS),
        browsers=neuron_browsers(),
        data=data_files(),
    output:
        html="reports/report.html",
    log:
        "logs/report_html.log",
    conda:
        "../envs/transfer-neurons.yaml"
    params:
        models=MODELS,
        settings=FIGURE_SETTINGS,
    script:
        "../scripts/report_html.py"
