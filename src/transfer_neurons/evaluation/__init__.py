"""Evaluation: intervention conditions, then one module per analysis, each with its maths and its stage.

May import: ``model``, ``data``, ``detection``, ``names``.
"""
