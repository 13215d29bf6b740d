"""Reporting: the figure and table registries, summaries of the evaluation tables, charts and the HTML report.

May import: ``names``, ``data`` (tidy-table helpers) and the maths of ``evaluation`` it summarises;
nothing that loads a model.
"""
