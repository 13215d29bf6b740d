"""Every analysis's reporting, one module each: its result files, summaries, charts, numbers and claims.

Importing this package registers them all (``reporting.registry``), in the order of ``MODULES``: the
order of the report's figures and of the claims table. ``contrasts`` comes last: it gathers what the
others register.
"""

import importlib

MODULES = (
    "data",
    "detection",
    "alignment",
    "qa",
    "answer_language",
    "language_space",
    "specificity",
    "attention",
    "agreement",
    "loss",
    "choices",
    "lape",
    "harness",
    "patching",
    "amplification",
    "logit_lens",
    "finetune",
    "dose",
    "magnitudes",
    "contrasts",
)

for _module in MODULES:
    importlib.import_module(f"{__name__}.{_module}")
