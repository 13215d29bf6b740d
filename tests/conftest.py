import fcntl
import os
import shutil

import pytest
import torch

from tests.tiny import TINY_FAMILIES, tiny_model, tiny_tokenizer
from transfer_neurons.model.adapters import adapter_for
from transfer_neurons.model.loading import LoadedModel


@pytest.fixture(params=sorted(TINY_FAMILIES))
def family(request):
    return request.param


@pytest.fixture
def model(family):
    return tiny_model(family)


@pytest.fixture(scope="session")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture
def loaded(model, tokenizer):
    """The tiny model of one family with its tokenizer and adapter, as ``load_model`` returns them."""
    return LoadedModel(model, tokenizer, adapter_for(model))


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """The tiny end-to-end workflow (tests/configs/tiny.yaml), run once for every test that reads it.

    Under pytest-xdist (``make test``) every worker is its own session; the first worker to ask runs
    the workflow in the directory all workers of this test run share, while the others wait on the
    lock and then read it. Tests only read it; one that edits its files works on a copy.
    """
    from tests.workflow_helpers import snakemake, tiny_config, write_config

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the run's base directory; each worker's own is below it
    workdir = shared / "finished_run"
    done = shared / "finished_run.done"
    with open(shared / "finished_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(workdir, ignore_errors=True)  # what a failed attempt left
            workdir.mkdir()
            write_config(workdir, tiny_config(workdir))
            snakemake(workdir, "all")
            done.touch()
    return workdir


def pytest_configure(config):
    """One torch thread per xdist worker: the workers already fill the cores, and tiny models gain
    nothing from more threads."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
