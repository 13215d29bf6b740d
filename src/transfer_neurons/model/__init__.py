"""The model: architecture adapters, loading, batching, and the hooks that read and edit a forward pass.

May import: torch, transformers and each other; nothing else of the package (data, detection,
evaluation and reporting build on this, not the other way round).
"""
