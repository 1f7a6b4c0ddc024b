"""Fixtures shared by the canvit-train tests (pytest runs with --import-mode=importlib: share through here,
never by importing one test file from another)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """One intra-op thread for the test, restored after: the CI box has 2 shared cores, and oversubscribed
    torch threads crawl. Modules opt in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
