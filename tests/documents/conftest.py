"""The sample documents, written once per session (tests/document_samples.py)."""

from __future__ import annotations

import pytest

from document_samples import Samples, write_samples


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Samples:
    return write_samples(tmp_path_factory.mktemp("documents"))
