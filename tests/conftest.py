import atexit
import os
import shutil
import tempfile
from pathlib import Path

# Under pytest-xdist (``-n 2`` in pyproject, the README's command) every worker runs one thread, as do the commands its
# tests start: workers of two threads each on two cores would only contend.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn

SOD_REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "sod-reference"

# The suite keeps its measured decisions (segkit.accel.decisions) in a folder of its own, never in the user's cache;
# the commands the tests start inherit it. The process that made it removes it on exit.
if "SEGKIT_CACHE_DIR" not in os.environ:
    os.environ["SEGKIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="segkit-test-cache-")
    atexit.register(shutil.rmtree, os.environ["SEGKIT_CACHE_DIR"], ignore_errors=True)
# --engine auto means segkit's own path in the suite (an export and a timing per test checkpoint would cost minutes);
# tests/test_engines.py clears it to test auto itself.
os.environ.setdefault("SEGKIT_ENGINE", "torch")


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory, request):
    """A folder for one test module's shared fixtures (trained checkpoints, exported folders), removed when the
    module's tests are done: a checkpoint of the full network is some 100 MB, and the suite kept gigabytes until its
    end (CI's disk once filled up mid-run). Per-test ``tmp_path`` folders go when their test passes (pyproject)."""
    path = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def auto_by_measurement(monkeypatch):
    """``--precision auto`` decided by (faked) measurements, whatever SEGKIT_AUTO_PRECISION the suite runs with."""
    monkeypatch.delenv("SEGKIT_AUTO_PRECISION", raising=False)


@pytest.fixture
def sod_reference() -> Path:
    """The shared real-prediction reference data (MATLAB / PySODMetrics values), beside the repository.

    A user's clone has none: the tests that need it skip with the reason. Under CI=true they must run."""
    if SOD_REFERENCE.is_dir():
        return SOD_REFERENCE
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but the shared SOD reference data is missing at {SOD_REFERENCE}")
    pytest.skip(f"shared SOD reference data not found at {SOD_REFERENCE} (only CI has it; CI=true makes this fail)")


PUBLISHED_REFERENCE = SOD_REFERENCE.parent / "published-models"


@pytest.fixture(scope="session")
def published_reference() -> Path:
    """The authors' state-dict layouts and outputs of the published networks (shared/data/published-models)."""
    if PUBLISHED_REFERENCE.is_dir():
        return PUBLISHED_REFERENCE
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but the shared published-model reference is missing at {PUBLISHED_REFERENCE}")
    pytest.skip(
        f"published-model reference not found at {PUBLISHED_REFERENCE} (only CI has it; CI=true makes this fail)"
    )


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters, so equalities test real folding."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=gen) * 0.4 - 0.2)
    return model


def max_rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_collection_modifyitems(items):
    """The tests marked slow first (a stable sort), so that no long test starts when the others are done and keeps
    one worker busy alone at the end. (With two workers on an AVX512-BF16 EPYC the suite took 691 s either way.)"""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
