"""The data: languages, parallel corpora, QA records, activation dumps and their on-disk storage.

May import: ``model`` (a dump runs the model over sentences), polars, numpy.
"""
