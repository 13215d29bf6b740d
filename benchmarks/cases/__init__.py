"""The benchmark cases, registered by name in report order; each maps a ``Bench`` to a results dict."""

from benchmarks.cases import batching, evaluation, memory, overhead, scale, scoring

CASES = {
    "scoring": scoring.run,
    "overhead": overhead.run,
    "batching": batching.run,
    "memory": memory.run,
    "scale": scale.run,
    "evaluation": evaluation.run,
}
