"""Detection: centroids, the neuron-scoring maths, the detector registry, ranking and the file stages.

May import: ``model``, ``data``, ``names``.
"""
