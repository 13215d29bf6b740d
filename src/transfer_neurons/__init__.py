"""Find and test transfer neurons in multilingual decoder-only language models.

The package holds all logic of the workflow; ``scripts/`` only wires Snakemake's
files to the functions here.
"""

__version__ = "0.1.0"
