"""One local SparkSession (local[2]) shared by every Spark test: starting one takes seconds."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def spark():
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from funnel.core.config import SparkConfig
    from funnel.pipelines.session import spark_session

    session = spark_session(SparkConfig(master="local[2]", driver_memory="1g", shuffle_partitions=2))
    yield session
    session.stop()
