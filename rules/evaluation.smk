rule conditions:
    """The neurons each condition deactivates: transfer neurons, drawn baselines, the LAPE set."""
    input:
        unpack(condition_inputs),
        manifest="resources/models/{model}/manifest.json",
        top=top_list,
    output:
        conditions="results/{model}/conditions/{lang}.parquet",
    log:
        "logs/conditions/{model}/{lang}.log",
    conda:
        "../envs/transfer-neurons.yaml"
    params:
        type1_fraction=config["detection"]["type1_fraction"],
        main_label=config["detection"]["top_n"],
        baselines={
            "seeds": tuple(EVALUATION["random_seeds"]),
            "sweep_seeds": tuple(EVALUATION["sweep_seeds"]),
            "layer_matched": EVALUATION["layer_matched"],
            "magnitude_matched": EVALUATION["magnitude_matched"],
            "magnitude_pool": EVALUATION["magnitude_pool"],
        },
    script:
        "../scripts/conditions.py"


rule evaluate_states:
    """Mutual k-NN, pair cosines and activation similarity per layer under every condition."""
    input:
        manifest="resources/models/{model}/manifest.json",
        pairs="results/{model}/activations/{lang}/test.pairs.parquet",
        test="results/{model}/activations/{lang}/test",
        conditions="results/{model}/conditions/{lang}.parquet",
    output:
        metrics="results/{model}/evaluation/states/{lang}.parquet",
        pairs="results/{model}/evaluation/states/{lang}.pairs.parquet",
        arrays="results/{model}/evaluation/states/{lang}.safetensors",
    log:
        "logs/evaluate_states/{model}/{lang}.log",
    benchmark:
        "logs/benchmarks/evaluate_states/{model}/{lang}.tsv"
    conda:
        "../envs/transfer-neurons.yaml"
    threads: config["runtime"]["threads"]
    resources:
        mem_mb=config["resources"]["model_mem_mb"],
        runtime=config["resources"]["model_runtime_min"],
        gpu=config["resources"]["gpus"],
    params:
        settings=intervention_settings("states"),
        knn_k=EVALUATION["states"]["knn_k"],
        device=config["runtime"]["device"],
    script:
        "../scripts/evaluate_states.py"


rule evaluate_qa:
    """Greedy QA answers and MKQA F1 in the L2 under every QA condition."""
    input:
        manifest="resources/models/{model}/manifest.json",
        conditions="results/{model}/conditions/{lang}.parquet",
        qa=qa_source_file(),
    output:
        answers="results/{model}/evaluation/qa/{lang}.parquet",
    log:
        "logs/evaluate_qa/{model}/{lang}.log",
    benchmark:
        "logs/benchmarks/evaluate_qa/{model}/{lang}.tsv"
    conda:
        "../envs/transfer-neurons.yaml"
    threads: config["runtime"]["threads"]
    resources:
        mem_mb=config["resources"]["model_mem_mb"],
        runtime=config["resources"]["model_runtime_min"],
        gpu=config["resources"]["gpus"],
    params:
        source=EVALUATION["qa"]["source"],
        settings=intervention_settings("qa", EVALUATION["qa"]["batch_size"]),
        # A function, so that Snakemake does not read "{question}" in the template as a wildcard.
        qa=lambda wildcards: {
            "template": EVALUATION["qa"]["template"],
            "max_new_tokens": EVALUATION["qa"]["max_new_tokens"],
            "kinds": tuple(EVALUATION["qa"]["kinds"]),
            "include_sweep": EVALUATION["qa"]["include_sweep"],
            "positions": tuple(EVALUATION["qa"]["positions"]),
            "seeds": EVALUATION["qa"]["seeds"],
            "limit": EVALUATION["qa"].get("limit"),
        },
        main_label=config["detection"]["top_n"],
        device=config["runtime"]["device"],
    script:
        "../scripts/evaluate_qa.py"


rule evaluate_loss:
    """Next-token loss of held-out text of every language under one language's conditions."""
    input:
        manifest="resources/models/{model}/manifest.json",
        conditions="results/{model}/conditions/{lang}.parquet",
        pairs=expand(
            "results/{{model}}/activations/{lang}/test.pairs.parquet", lang=LANGUAGES
        ),
    output:
        losses="results/{model}/evaluation/loss/{lang}.parquet",
    log:
        "logs/evaluate_loss/{model}/{lang}.log",
    benchmark:
        "logs/benchmarks/evaluate_loss/{model}/{lang}.tsv"
    conda:
        "../envs/transfer-neurons.yaml"
    threads: config["runtime"]["threads"]
    resources:
        mem_mb=config["resources"]["model_mem_mb"],
        runtime=config["resources"]["model_runtime_min"],
        gpu=config["resources"]["gpus"],
    params:
        settings=intervention_settings("loss", EVALUATION["loss"]["batch_size"]),
        kinds=EVALUATION["loss"]["kinds"],
        main_label=config["detection"]["top_n"],
        seeds=EVALUATION["loss"]["seeds"],
        pivot=config["pivot_language"],
        n_sentences=EVALUATION["loss"]["sentences"],
        every_language=EVALUATION["loss"]["text"] == "every",
        languages=LANGUAGES,
        device=config["runtime"]["device"],
    script:
        "../scripts/evaluate_loss.py"


rule evaluate_harness:
    """lm-evaluation-harness tasks of one language under one condition or all of them (lm_eval.jobs)."""
    input:
        manifest="resources/models/{model}/manifest.json",
        conditions="results/{model}/conditions/{lang}.parquet",
        tasks=harness_task_files,
    output:
        results=harness_outputs(HARNESS_RESULTS),
        tables=harness_outputs(HARNESS_TABLE),
    log:
        f"logs/evaluate_harness/{HARNESS_JOB}.log",
    benchmark:
        f"logs/benchmarks/evaluate_harness/{HARNESS_JOB}.tsv"
    wildcard_constraints:
        condition="|".join(HARNESS_CONDITIONS) or "^$",
    conda:
        "../envs/transfer-neurons.yaml"
    threads: config["runtime"]["threads"]
    resources:
        mem_mb=config["resources"]["model_mem_mb"],
        runtime=config["resources"]["model_runtime_min"],
        gpu=config["resources"]["gpus"],
    params:
        conditions=harness_job_conditions,
        tasks=lambda wildcards: tasks_for(LM_EVAL["tasks"], wildcards.lang),
        include_path=LM_EVAL["include_path"],
        num_fewshot=LM_EVAL["num_fewshot"],
        limit=LM_EVAL["limit"],
        batch_size=LM_EVAL["batch_size"],
        factor=EVALUATION["factor"],
        positions=LM_EVAL["positions"],
        bootstrap_iters=LM_EVAL["bootstrap_iters"],
        device=config["runtime"]["device"],
    script:
        "../scripts/evaluate_harness.py"


rule evaluate_patching:
    """Type-1 neurons' activations written back into the corrupted run: restoration, interchange, mean."""
    input:
        manifest="resources/models/{model}/manifest.json",
        pairs="results/{model}/activations/{lang}/test.pairs.parquet",
        train="results/{model}/activations/{lang}/train",
        conditions="results/{model}/conditions/{lang}.parquet",
    output:
        table="results/{model}/evaluation/patching/{lang}.parquet",
    log:
        "logs/evaluate_patching/{model}/{lang}.log",
    benchmark:
        "logs/benchmarks/evaluate_patching/{model}/{lang}.tsv"
    conda:
        "../envs/transfer-neurons.yaml"
    threads: config["runtime"]["threads"]
    resources:
        mem_mb=config["resources"]["model_mem_mb"],
        runtime=config["resources"]["model_runtime_min"],
        gpu=config["resources"]["gpus"],
    params:
        control_seed=EVALUATION["patching"]["control_seed"],
        factor=EVALUATION["factor"],
        max_batch_tokens=config["runtime"]["max_batch_tokens"],
        knn_k=EVALUATION["states"]["knn_k"][0],
        max_pairs=EVALUATION["patching"]["max_pairs"],
        device=config["runtime"]["device"],
    script:
        "../scripts/evaluate_patching.py"


rule evaluate_attention:
    """How the last token's attention per layer and head shifts under deactivation."""
    input:
        manifest="resources/models/{model}/manifest.json",
        pairs="results/{model}/activations/{lang}/test.pairs.parquet",
        conditions="results/{model}/conditions/{lang}.parquet",
    output:
        shifts="results/{model}/evaluation/attention/{lang}.parquet",
        sentences="results/{model}/evaluation/attention/{lang}.sentences.parquet",
        example="results/{model}/evaluation/attention/{lang}.example.parquet",
    log:
        "logs/evaluate_attention/{model}/{lang}.log",
    benchmark:
        "logs/benchmarks/evaluate_attention/{model}/{lang}.tsv"
    conda:
        "../envs/transfer-neurons.yaml"
    threads: config["runtime"]["threads"]
    resources:
        mem_mb=config["resources"]["model_mem_mb"],
        runtime=config["resources"]["model_runtime_min"],
        gpu=config["resources"]["gpus"],
    params:
        settings=intervention_settings("attention"),
        n_sentences=EVALUATION["attention"]["sentences"],
        seed=EVALUATION["random_seeds"][0],
        device=config["runtime"]["device"],
    script:
        "../scripts/evaluate_attention.py"


rule language_space:
    """Similarity of all language centroids per layer, normal and deactivated; 2-D PCA."""
    input:
        english=f"results/{{model}}/activations/{LANGUAGES[0]}/test",
        tests=expand("results/{{model}}/activations/{lang}/test", lang=LANGUAGES),
        arrays=expand(
            "results/{{model}}/evaluation/states/{lang}.safetensors", lang=LANGUAGES
        ),
    output:
        similarity="results/{model}/evaluation/language_space.parquet",
        pca="results/{model}/evaluation/language_pca.parquet",
    log:
        "logs/language_space/{model}.log",
    conda:
        "../envs/transfer-neurons.yaml"
    params:
        pivot=config["pivot_language"],
        pca_depths=EVALUATION["language_space"]["pca_depths"],
    script:
        "../scripts/language_space.py"


rule language_specificity:
    """eta^2 and ANOVA p of each top-N neuron's activations against the language label."""
    input:
        tests=expand("results/{{model}}/activations/{lang}/test", lang=LANGUAGES),
        tops=expand(
            "results/{{model}}/neurons/{detector}/{lang}.parquet",
            detector=EVALUATION["detector"],
            lang=LANGUAGES,
        ),
    output:
        table="results/{model}/evaluation/specificity.parquet",
    log:
        "logs/language_specificity/{model}.log",
    conda:
        "../envs/transfer-neurons.yaml"
    params:
        pivot=config["pivot_language"],
        main_label=config["detection"]["top_n"],
        groups=EVALUATION["specificity"]["groups"],
    script:
        "../scripts/language_specificity.py"
