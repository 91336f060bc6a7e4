"""One intra-op thread for this package's tests: the models here are tiny, so a second thread
buys nothing, and on a machine shared with other jobs OpenMP threads spin-waiting on descheduled
siblings made single tests 30-150x slower (seen: 31 s instead of 0.2 s)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_intra_op_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
