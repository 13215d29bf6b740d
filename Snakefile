# Transfer neurons: find and test the MLP neurons that move token representations
# between language-specific and shared latent spaces (Tezuka & Inoue, EMNLP 2025).


from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "reports/workflow/workflow.rst"


include: "rules/common.smk"
include: "rules/models.smk"
include: "rules/corpus.smk"
include: "rules/activations.smk"
include: "rules/detection.smk"
include: "rules/evaluation.smk"
include: "rules/browser.smk"
include: "rules/figures.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(),
