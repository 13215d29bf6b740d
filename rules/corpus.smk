rule prepare_corpus:
    """Validate one language's English-L2 pairs and split them into train and test."""
    input:
        corpus_source_file,
    output:
        corpus="results/corpus/{lang}.parquet",
        dropped="results/corpus/{lang}.dropped.parquet",
    log:
        "logs/prepare_corpus/{lang}.log",
    conda:
        "../envs/corpus.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        source=corpus_source,
        pivot=config["pivot_language"],
        test_percent=config["corpus"]["test_percent"],
        max_train=config["corpus"].get("max_train"),
        max_test=config["corpus"].get("max_test"),
        duplicates=config["corpus"]["duplicates"],
    script:
        "../scripts/prepare_corpus.py"
