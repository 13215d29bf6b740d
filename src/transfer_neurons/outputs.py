"""Names of the evaluation figures and report tables, and which results each figure reads.

Free of heavy imports on purpose: the Snakefile imports it at start-up, which happens in
every cluster job too. Adding a figure means one entry here and one chart function.
"""

# Input kinds: the Snakemake rules map each kind to the output of the rule that writes it.
FIGURE_INPUTS: dict[str, tuple[str, ...]] = {
    "qa_f1": ("qa",),
    "knn_alignment": ("states",),
    "state_similarity": ("states",),
    "activation_similarity": ("states",),
    "language_space": ("language_space",),
    "language_pca": ("language_pca",),
    "specificity": ("specificity",),
    "attention_shift": ("attention",),
    "attention_example": ("attention_example",),
    "detector_agreement": ("agreement",),
    "dose_response": ("states", "qa"),
}


REPORT_TABLES = (
    "detection_summary",
    "qa_summary",
    "alignment_summary",
    "language_space_summary",
    "language_pca",
    "specificity_summary",
    "attention_summary",
    "dose_summary",
    "agreement_summary",
)
