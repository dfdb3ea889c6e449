import os
import secrets

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# TensorFlow's CPU kernels for dilated transposed convolution exist only through oneDNN
# ("do not yet support dilation rates larger than 1" without it): the oracle needs them.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "rebuilds_database: wipes the whole Neo4j database (bulk import); runs last")


def pytest_collection_modifyitems(config, items):
    # A bulk import replaces the database, so those tests run after every other test.
    items.sort(key=lambda item: item.get_closest_marker("rebuilds_database") is not None)


@pytest.fixture(scope="session")
def driver():
    """A verified driver to the real Neo4j server (.ci/run starts it). No server: the tests
    fail with the one-line connection error; they never skip."""
    from loader.neo4j.db import connect

    d = connect()
    yield d
    d.close()


@pytest.fixture
def model_name(driver):
    """A fresh model name, deleted from Neo4j after the test."""
    from loader.neo4j.models import delete_model

    names = []

    def make(prefix="t"):
        name = f"{prefix}_{secrets.token_hex(4)}"
        names.append(name)
        return name

    yield make
    for name in names:
        delete_model(driver, name)
