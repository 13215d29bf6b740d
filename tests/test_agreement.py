import polars as pl

from transfer_neurons.detection.agreement import run_detector_agreement, top_n_agreement


def top_list(rows):
    return pl.DataFrame(rows, schema=["top_n_label", "neuron_type", "layer", "neuron"], orient="row")


def test_agreement_counts_each_list_and_the_shared_neurons():
    reference = top_list([("5", "type1", 0, 1), ("5", "type1", 0, 2), ("5", "type1", 1, 7), ("5", "type2", 3, 4)])
    other = top_list([("5", "type1", 0, 2), ("5", "type1", 1, 8), ("5", "type2", 2, 4)])
    counts = {row[:3]: row[3:] for row in top_n_agreement(reference, other).iter_rows()}
    # (n_reference, n_other, shared) per (label, type, layer); layer 2 is only in the other list
    assert counts == {
        ("5", "type1", 0): (2, 1, 1),
        ("5", "type1", 1): (1, 1, 0),
        ("5", "type2", 3): (1, 0, 0),
        ("5", "type2", 2): (0, 1, 0),
    }


def test_every_other_detector_is_compared_with_the_reference(tmp_path):
    lists = {
        "centroid": top_list([("5", "type1", 0, 1), ("5", "type1", 0, 2)]),
        "correlation": top_list([("5", "type1", 0, 2)]),
        "third": top_list([("5", "type1", 0, 1), ("5", "type1", 0, 2)]),
    }
    paths = {}
    for name, table in lists.items():
        table.write_parquet(tmp_path / f"{name}.parquet")
        paths[name] = {"ja": tmp_path / f"{name}.parquet"}
    table = run_detector_agreement("centroid", paths, labels={"model": "m"})
    shared = dict(zip(table["detector"], table["shared"], strict=True))
    assert shared == {"correlation": 1, "third": 2}
    assert set(table["reference"]) == {"centroid"}
