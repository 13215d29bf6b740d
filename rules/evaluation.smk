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
        "../envs/model.yaml"
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
        "../envs/model.yaml"
    threads: config["runtime"]["threads"]
    resources:
        mem_mb=config["resources"]["model_mem_mb"],
        runtime=config["resources"]["model_runtime_min"],
        gpu=config["resources"]["gpus"],
    params:
        settings=intervention_settings("states"),
        knn_k=EVALUATION["states"]["knn_k"],
        last_layer=LAST_LAYER,
        runtime=MODEL_RUNTIME,
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
        "../envs/model.yaml"
    threads: config["runtime"]["threads"]
    resources:
        mem_mb=config["resources"]["model_mem_mb"],
        runtime=config["resources"]["model_runtime_min"],
        gpu=config["resources"]["gpus"],
    params:
        source=EVALUATION["qa"]["source"],
        settings=intervention_settings("qa"),
        # A function, so that Snakemake does not read "{question}" in the template as a wildcard.
        qa=lambda wildcards: {
            "template": qa_template(wildcards.lang),
            "max_new_tokens": EVALUATION["qa"]["max_new_tokens"],
            "kinds": tuple(EVALUATION["qa"]["kinds"]),
            "include_sweep": EVALUATION["qa"]["include_sweep"],
            "positions": tuple(EVALUATION["qa"]["positions"]),
            "seeds": EVALUATION["qa"]["seeds"],
            "limit": EVALUATION["qa"].get("limit"),
            "stop": EVALUATION["qa"]["stop"],
            "question_filter": EVALUATION["qa"]["question_filter"],
        },
        main_label=config["detection"]["top_n"],
        runtime=MODEL_RUNTIME,
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
        "../envs/model.yaml"
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
        runtime=MODEL_RUNTIME,
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
        "../envs/model.yaml"
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
        runtime=MODEL_RUNTIME,
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
        pairs="results/{model}/evaluation/patching/{lang}.pairs.parquet",
    log:
        "logs/evaluate_patching/{model}/{lang}.log",
    benchmark:
        "logs/benchmarks/evaluate_patching/{model}/{lang}.tsv"
    conda:
        "../envs/model.yaml"
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
        last_layer=LAST_LAYER,
        runtime=MODEL_RUNTIME,
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
        "../envs/model.yaml"
    threads: config["runtime"]["threads"]
    resources:
        mem_mb=config["resources"]["model_mem_mb"],
        runtime=config["resources"]["model_runtime_min"],
        gpu=config["resources"]["gpus"],
    params:
        settings=intervention_settings("attention"),
        n_sentences=EVALUATION["attention"]["sentences"],
        seed=EVALUATION["random_seeds"][0],
        runtime=MODEL_RUNTIME,
    script:
        "../scripts/evaluate_attention.py"


rule language_states:
    """Last-token states of parallel questions in every language, each L2 under its conditions."""
    input:
        manifest="resources/models/{model}/manifest.json",
        conditions=expand("results/{{model}}/conditions/{lang}.parquet", lang=LANGUAGES),
        questions=language_question_files,
    output:
        states=directory("results/{model}/evaluation/language_states"),
    log:
        "logs/language_states/{model}.log",
    benchmark:
        "logs/benchmarks/language_states/{model}.tsv"
    conda:
        "../envs/model.yaml"
    threads: config["runtime"]["threads"]
    resources:
        mem_mb=config["resources"]["model_mem_mb"],
        runtime=config["resources"]["model_runtime_min"],
        gpu=config["resources"]["gpus"],
    params:
        source=language_question_source(),
        languages=LANGUAGES,
        pivot=config["pivot_language"],
        conditions=language_space_conditions(),
        settings=intervention_settings("states"),
        embedding=LANGUAGE_SPACE["embedding"],
        last_layer=LAST_LAYER,
        max_questions=LANGUAGE_SPACE["max_questions"],
        runtime=MODEL_RUNTIME,
    script:
        "../scripts/language_states.py"


rule language_space:
    """Similarity of all language centroids per layer, normal and deactivated; 2-D PCA; SVD dimensionality."""
    input:
        unpack(language_space_inputs),
    output:
        similarity="results/{model}/evaluation/language_space.parquet",
        pca="results/{model}/evaluation/language_pca.parquet",
        svd="results/{model}/evaluation/language_svd.parquet",
    log:
        "logs/language_space/{model}.log",
    conda:
        "../envs/model.yaml"
    params:
        languages=LANGUAGES,
        pivot=config["pivot_language"],
        space=LANGUAGE_SPACE,
        last_layer=LAST_LAYER,
        type1_fraction=config["detection"]["type1_fraction"],
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
        "../envs/model.yaml"
    params:
        languages=LANGUAGES,
        pivot=config["pivot_language"],
        main_label=config["detection"]["top_n"],
        groups=EVALUATION["specificity"]["groups"],
        english_pairs=EVALUATION["specificity"]["english_pairs"],
    script:
        "../scripts/language_specificity.py"


rule evaluate_choices:
    """The built-in multiple-choice task of the language and of English under one language's conditions."""
    input:
        manifest="resources/models/{model}/manifest.json",
        conditions="results/{model}/conditions/{lang}.parquet",
        tasks=choice_task_files,
    output:
        scores="results/{model}/evaluation/choices/{lang}.parquet",
    log:
        "logs/evaluate_choices/{model}/{lang}.log",
    benchmark:
        "logs/benchmarks/evaluate_choices/{model}/{lang}.tsv"
    conda:
        "../envs/model.yaml"
    threads: config["runtime"]["threads"]
    resources:
        mem_mb=config["resources"]["model_mem_mb"],
        runtime=config["resources"]["model_runtime_min"],
        gpu=config["resources"]["gpus"],
    params:
        task_languages=lambda wildcards: choice_task_languages(wildcards.lang),
        settings=intervention_settings("choices"),
        kinds=EVALUATION["choices"]["kinds"],
        seeds=EVALUATION["choices"]["seeds"],
        limit=EVALUATION["choices"]["limit"],
        main_label=config["detection"]["top_n"],
        runtime=MODEL_RUNTIME,
    script:
        "../scripts/evaluate_choices.py"


rule evaluate_amplification:
    """QA, multiple choice and k-NN alignment with the transfer neurons and their controls scaled by each factor."""
    input:
        manifest="resources/models/{model}/manifest.json",
        conditions="results/{model}/conditions/{lang}.parquet",
        qa=qa_source_file(),
        task=lambda wildcards: choice_task_files(wildcards)[0],
        pairs="results/{model}/activations/{lang}/test.pairs.parquet",
        test="results/{model}/activations/{lang}/test",
    output:
        values="results/{model}/evaluation/amplification/{lang}.parquet",
    log:
        "logs/evaluate_amplification/{model}/{lang}.log",
    benchmark:
        "logs/benchmarks/evaluate_amplification/{model}/{lang}.tsv"
    conda:
        "../envs/model.yaml"
    threads: config["runtime"]["threads"]
    resources:
        mem_mb=config["resources"]["model_mem_mb"],
        runtime=config["resources"]["model_runtime_min"],
        gpu=config["resources"]["gpus"],
    params:
        source=EVALUATION["qa"]["source"],
        # A function, so that Snakemake does not read "{question}" in the template as a wildcard.
        settings=lambda wildcards: {
            "factors": tuple(EVALUATION["amplification"]["factors"]),
            "kinds": tuple(EVALUATION["amplification"]["kinds"]),
            "seeds": EVALUATION["amplification"]["seeds"],
            "positions": EVALUATION["amplification"]["positions"],
            "qa_template": qa_template(wildcards.lang),
            "qa_max_new_tokens": EVALUATION["qa"]["max_new_tokens"],
            "qa_stop": EVALUATION["qa"]["stop"],
            "question_filter": EVALUATION["qa"]["question_filter"],
            "qa_limit": EVALUATION["amplification"]["qa_limit"],
            "choice_limit": EVALUATION["amplification"]["choice_limit"],
            "knn_k": EVALUATION["states"]["knn_k"][0],
            "last_layer": LAST_LAYER,
            "batch_size": config["runtime"]["batch_size"],
            "max_batch_tokens": config["runtime"]["max_batch_tokens"],
        },
        main_label=config["detection"]["top_n"],
        runtime=MODEL_RUNTIME,
    script:
        "../scripts/evaluate_amplification.py"


# --- fine-tuning only the transfer neurons (evaluation.finetune) ------------------------------
# A training job keeps its checkpoints in results/{model}/finetune/{lang}/{neuron_set}.work/, beside
# its outputs and not among them: Snakemake deletes a failed job's declared outputs, and this folder
# must survive for the rerun (rerun-incomplete) to resume there. The delta is moved into place only
# when training has finished, so a killed job never leaves a partial delta.
rule finetune:
    """Train only one neuron set's weights (or LoRA of as many parameters) on the language's training text."""
    input:
        manifest="resources/models/{model}/manifest.json",
        conditions="results/{model}/conditions/{lang}.parquet",
        pairs="results/{model}/activations/{lang}/train.pairs.parquet",
    output:
        delta="results/{model}/finetune/{lang}/{neuron_set}/delta.safetensors",
        training="results/{model}/finetune/{lang}/{neuron_set}/training.parquet",
    log:
        "logs/finetune/{model}/{lang}/{neuron_set}.log",
    benchmark:
        "logs/benchmarks/finetune/{model}/{lang}/{neuron_set}.tsv"
    wildcard_constraints:
        neuron_set="|".join(FINETUNE_TRAINED_SETS) or "^$",
    conda:
        "../envs/model.yaml"
    threads: config["runtime"]["threads"]
    resources:
        mem_mb=config["resources"]["model_mem_mb"],
        runtime=config["resources"]["model_runtime_min"],
        gpu=config["resources"]["gpus"],
    params:
        settings={
            "steps": FINETUNE["steps"],
            "learning_rate": FINETUNE["learning_rate"],
            "batch_size": FINETUNE["batch_size"],
            "seed": FINETUNE["seed"],
            "max_batch_tokens": FINETUNE["max_batch_tokens"],
            "checkpoint_every": FINETUNE["checkpoint_every"],
        },
        control_seed=FINETUNE["control_seed"],
        work_dir=lambda wildcards: (
            f"results/{wildcards.model}/finetune/{wildcards.lang}/{wildcards.neuron_set}.work"
        ),
        runtime=MODEL_RUNTIME,
    script:
        "../scripts/finetune.py"


rule evaluate_finetuned:
    """L2 and English loss, QA F1, multiple choice and k-NN alignment of the base model plus one trained delta."""
    input:
        # The trained delta the evaluation adds to the base model (none for the base model itself).
        unpack(
            lambda wildcards: (
                {}
                if wildcards.neuron_set == finetune_sets.BASE_SET
                else {"delta": rules.finetune.output.delta.format(**wildcards)}
            )
        ),
        manifest="resources/models/{model}/manifest.json",
        pairs="results/{model}/activations/{lang}/test.pairs.parquet",
        test="results/{model}/activations/{lang}/test",
        qa=qa_source_file(),
        task=lambda wildcards: choice_task_files(wildcards)[0],
    output:
        measures="results/{model}/finetune/{lang}/{neuron_set}/measures.parquet",
    log:
        "logs/evaluate_finetuned/{model}/{lang}/{neuron_set}.log",
    benchmark:
        "logs/benchmarks/evaluate_finetuned/{model}/{lang}/{neuron_set}.tsv"
    wildcard_constraints:
        neuron_set="|".join(FINETUNE_SETS) or "^$",
    conda:
        "../envs/model.yaml"
    threads: config["runtime"]["threads"]
    resources:
        mem_mb=config["resources"]["model_mem_mb"],
        runtime=config["resources"]["model_runtime_min"],
        gpu=config["resources"]["gpus"],
    params:
        source=EVALUATION["qa"]["source"],
        # A function, so that Snakemake does not read "{question}" in the template as a wildcard.
        settings=lambda wildcards: {
            "sentences": FINETUNE["sentences"],
            "questions": FINETUNE["questions"],
            "items": FINETUNE["items"],
            "qa_template": qa_template(wildcards.lang),
            "qa_max_new_tokens": EVALUATION["qa"]["max_new_tokens"],
            "qa_stop": EVALUATION["qa"]["stop"],
            "question_filter": EVALUATION["qa"]["question_filter"],
            "knn_k": EVALUATION["states"]["knn_k"][0],
            "last_layer": LAST_LAYER,
            "batch_size": config["runtime"]["batch_size"],
            "loss_batch_size": EVALUATION["loss"]["batch_size"],
            "max_batch_tokens": config["runtime"]["max_batch_tokens"],
        },
        pivot=config["pivot_language"],
        runtime=MODEL_RUNTIME,
    script:
        "../scripts/evaluate_finetuned.py"


# The logit lens (evaluation.logit_lens): per layer, P(answer's first token) in the L2 and in English.
LOGIT_LENS = EVALUATION["logit_lens"]


rule evaluate_logit_lens:
    """The logit lens of the last prompt token under the conditions, and the script shares of the neurons' tokens."""
    input:
        manifest="resources/models/{model}/manifest.json",
        conditions="results/{model}/conditions/{lang}.parquet",
        qa=qa_source_file(),
    output:
        lens="results/{model}/evaluation/logit_lens/{lang}.parquet",
        neurons="results/{model}/evaluation/logit_lens/{lang}.neurons.parquet",
    log:
        "logs/evaluate_logit_lens/{model}/{lang}.log",
    benchmark:
        "logs/benchmarks/evaluate_logit_lens/{model}/{lang}.tsv"
    conda:
        "../envs/model.yaml"
    threads: config["runtime"]["threads"]
    resources:
        mem_mb=config["resources"]["model_mem_mb"],
        runtime=config["resources"]["model_runtime_min"],
        gpu=config["resources"]["gpus"],
    params:
        source=EVALUATION["qa"]["source"],
        intervention=intervention_settings("logit_lens"),
        # A function, so that Snakemake does not read "{question}" in the template as a wildcard.
        settings=lambda wildcards: {
            "threshold": LOGIT_LENS["threshold"],
            "kinds": tuple(LOGIT_LENS["kinds"]),
            "seeds": LOGIT_LENS["seeds"],
            "limit": LOGIT_LENS["limit"],
            "template": qa_template(wildcards.lang),
            "max_new_tokens": EVALUATION["qa"]["max_new_tokens"],
            "stop": EVALUATION["qa"]["stop"],
            "question_filter": EVALUATION["qa"]["question_filter"],
            "lens_tokens": EVALUATION["browser"]["lens_tokens"],
            "pivot": config["pivot_language"],
        },
        main_label=config["detection"]["top_n"],
        runtime=MODEL_RUNTIME,
    script:
        "../scripts/evaluate_logit_lens.py"
