rule summary_tables:
    """The numbers the report quotes, as CSV tables (the table registry), and the claims table."""
    input:
        unpack(summary_table_inputs),
        manifest="resources/models/{model}/manifest.json",
    output:
        tables=[
            report(
                f"reports/tables/{{model}}/{table}.csv",
                caption="../reports/workflow/table.rst",
                category=table_category(table),
                subcategory="{model}",
                labels=report_labels(table, "table"),
            )
            for table in SUMMARY_TABLES
        ],
        claims=report(
            "reports/tables/{model}/claims.csv",
            caption="../reports/workflow/claims.rst",
            category=table_category("claims"),
            subcategory="{model}",
            labels=report_labels("claims", "table"),
        ),
    log:
        "logs/summary_tables/{model}.log",
    conda:
        "../envs/report.yaml"
    params:
        settings=FIGURE_SETTINGS,
        results=table_inputs(SUMMARY_TABLES),
    script:
        "../scripts/summary_tables.py"


rule report_html:
    """One HTML page: the paper's claims with verdicts, every figure with its numbers; provenance beside it."""
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
        html=report(
            "reports/report.html",
            caption="../reports/workflow/report.rst",
            category=PROJECT_REPORT_CATEGORY,
            labels=report_labels("project report", "HTML"),
        ),
        # Run-specific facts (date, commit, machine, paths, digests), kept out of the page so that two
        # runs of one commit write the same report.html.
        provenance="reports/provenance.json",
    log:
        "logs/report_html.log",
    conda:
        "../envs/report.yaml"
    params:
        models=MODELS,
        settings=FIGURE_SETTINGS,
    script:
        "../scripts/report_html.py"
