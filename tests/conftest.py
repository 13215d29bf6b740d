import pytest

from tests.tiny import TINY_FAMILIES, tiny_model, tiny_tokenizer


@pytest.fixture(params=sorted(TINY_FAMILIES))
def family(request):
    return request.param


@pytest.fixture
def model(family):
    return tiny_model(family)


@pytest.fixture(scope="session")
def tokenizer():
    return tiny_tokenizer()
