import pytest

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
    """The tiny end-to-end workflow (tests/configs/tiny.yaml), run once for every test that reads it."""
    from tests.workflow_helpers import snakemake, tiny_config, write_config

    workdir = tmp_path_factory.mktemp("workflow")
    write_config(workdir, tiny_config(workdir))
    snakemake(workdir, "all")
    return workdir
