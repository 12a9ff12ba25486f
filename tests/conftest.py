"""Shared fixtures. Slow tests (real model, webserver) are marked `slow` and run in CI."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def model_path() -> str:
    """The real embedded model (converted once into the cache by `make model`)."""
    from restem_assets.models.model_cache import ensure_default_model

    return str(ensure_default_model())


@pytest.fixture
def store(tmp_path):
    from restem_assets.store.tables import ParquetStore

    return ParquetStore(str(tmp_path / "data"))


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A real local Ray cluster (head on 127.0.0.1, 2 CPUs, the Jobs API on): (GCS address, dashboard URL).

    One per test session, shared by the Ray engine and the Ray executor tests."""
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install '.[ray]')")
    from tests.cluster_helpers import local_ray_cluster

    with local_ray_cluster(tmp_path_factory.mktemp("ray"), num_cpus=2, dashboard=True) as addresses:
        yield addresses
