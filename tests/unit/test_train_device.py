"""Where ALS is fitted: the device selection and the two-phase fit on the GPU path.

There is no GPU here: the GPU path is driven by a stand-in class that records its calls and behaves,
where it matters, as implicit's GPU ALS does (``fit`` initialises only factors that are still None,
factors come back through ``.to_numpy()``). Every other test trains on the real CPU implementation.
"""

from __future__ import annotations

from typing import Any

import implicit.gpu
import numpy as np
import pytest
import scipy.sparse as sp

from reco.settings import Settings
from reco.train import TrainConfig, fit_als, select_als_device
from reco.train import als as als_module

CONFIG = TrainConfig(factors=4, iterations=15, warm_iterations=3, alpha=2.0, num_threads=1)


def matrices(seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """A (30, 20) full matrix and the same-shape partial one holding about half of its entries."""
    rng = np.random.default_rng(seed)
    full = sp.random(30, 20, density=0.2, format="csr", dtype=np.float32, random_state=rng)
    full.data[:] = rng.integers(1, 4, size=full.nnz).astype(np.float32)
    partial = full.copy()
    partial.data[rng.random(partial.nnz) < 0.5] = 0
    partial.eliminate_zeros()
    return full, partial


class FakeGpuMatrix:
    """implicit.gpu.Matrix as the code under test uses it: ``to_numpy()`` copies to the host."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def to_numpy(self) -> np.ndarray:
        return self.array.copy()


class FakeGpuAls:
    """Records constructor arguments and fits. A "fit" adds its iteration count to every factor,
    starting from zeros only where factors are still None (as implicit's GPU fit initialises only
    missing factors), so the factors count the iterations they have been through."""

    created: list[FakeGpuAls]

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.iterations = kwargs["iterations"]
        self.user_factors: FakeGpuMatrix | None = None
        self.item_factors: FakeGpuMatrix | None = None
        self.fits: list[dict[str, Any]] = []
        self.created.append(self)

    def fit(self, user_items: sp.csr_matrix, show_progress: bool = True) -> None:
        self.fits.append(
            {"matrix": user_items.copy(), "iterations": self.iterations, "continued": self.user_factors is not None}
        )
        users, items = user_items.shape
        factors = self.kwargs["factors"]
        if self.user_factors is None:
            self.user_factors = FakeGpuMatrix(np.zeros((users, factors), dtype=np.float32))
        if self.item_factors is None:
            self.item_factors = FakeGpuMatrix(np.zeros((items, factors), dtype=np.float32))
        self.user_factors.array += self.iterations
        self.item_factors.array += self.iterations


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> type[FakeGpuAls]:
    """CUDA "usable": the availability check answers with the recording stand-in."""
    FakeGpuAls.created = []
    monkeypatch.setattr(als_module, "_gpu_als", lambda: (FakeGpuAls, "CUDA is usable"))
    return FakeGpuAls


def test_train_device_setting_defaults_to_cpu_and_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECO_TRAIN_DEVICE", raising=False)
    assert Settings().train_device == "cpu"
    monkeypatch.setenv("RECO_TRAIN_DEVICE", "gpu")
    assert Settings().train_device == "gpu"
    monkeypatch.setenv("RECO_TRAIN_DEVICE", "tpu")
    with pytest.raises(ValueError, match="train_device"):
        Settings()


def test_cpu_requested_is_cpu_without_looking_for_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_lookup() -> None:
        raise AssertionError("the GPU must not be probed when the CPU is requested")

    monkeypatch.setattr(als_module, "_gpu_als", no_lookup)
    choice = select_als_device("cpu")
    assert (choice.device, choice.reason, choice.gpu_als) == ("cpu", "cpu requested", None)


def test_gpu_requested_without_cuda_falls_back_to_cpu_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # This machine's implicit, whatever it was built with, told that CUDA is not usable.
    monkeypatch.setattr(implicit.gpu, "HAS_CUDA", False)
    with caplog.at_level("WARNING", logger="reco.train.als"):
        choice = select_als_device("gpu")
    assert choice.device == "cpu" and choice.gpu_als is None
    assert choice.reason.startswith("gpu requested but ") and choice.reason.endswith("; fitting on the cpu")
    assert choice.reason in caplog.text


@pytest.mark.parametrize(
    ("built", "has_rmm", "reason"),
    [
        (False, False, "gpu requested but implicit was built without CUDA"),
        (True, False, "needs the RAPIDS memory manager (rmm), which is not installed"),
        (True, True, "implicit's CUDA extension is built but does not start ("),
    ],
)
def test_the_fallback_reason_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, built: bool, has_rmm: bool, reason: str
) -> None:
    monkeypatch.setattr(implicit.gpu, "HAS_CUDA", False)
    monkeypatch.setattr(implicit.gpu, "HAS_RMM", has_rmm)
    monkeypatch.setattr(als_module, "_cuda_extension_built", lambda: built)
    choice = select_als_device("gpu")
    assert choice.device == "cpu" and reason in choice.reason


def test_a_gpu_model_that_cannot_be_constructed_falls_back_to_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # implicit's real GPU class refuses to be built without rmm, whatever HAS_CUDA says.
    monkeypatch.setattr(implicit.gpu, "HAS_CUDA", True)
    monkeypatch.setattr(implicit.gpu, "HAS_RMM", False)
    choice = select_als_device("gpu")
    assert choice.device == "cpu"
    assert "constructing implicit's GPU ALS failed (ValueError: RMM isn't installed" in choice.reason


def test_gpu_is_used_when_available_with_the_same_two_phases(fake_gpu: type[FakeGpuAls]) -> None:
    full, partial = matrices()
    choice = select_als_device("gpu")
    assert (choice.device, choice.gpu_als) == ("gpu", fake_gpu)
    fit = fit_als(full, partial, CONFIG, choice)

    (model,) = fake_gpu.created
    assert model.kwargs == {
        "factors": CONFIG.factors,
        "regularization": CONFIG.regularization,
        "alpha": 1.0,  # alpha is in the matrices: implicit's GPU fit does not apply it
        "iterations": CONFIG.iterations - CONFIG.warm_iterations,
        "random_state": CONFIG.seed,
    }
    first, second = model.fits
    assert first["iterations"] == CONFIG.iterations - CONFIG.warm_iterations and not first["continued"]
    assert second["iterations"] == CONFIG.warm_iterations and second["continued"]
    np.testing.assert_allclose(first["matrix"].toarray(), CONFIG.alpha * partial.toarray())
    np.testing.assert_allclose(second["matrix"].toarray(), CONFIG.alpha * full.toarray())

    assert (fit.device, fit.device_reason) == ("gpu", "gpu requested and CUDA is usable")
    assert fit.phase1 is not None
    for factors, rows in ((fit.phase1[0], 30), (fit.phase1[1], 20), (fit.user_factors, 30), (fit.item_factors, 20)):
        assert isinstance(factors, np.ndarray) and factors.dtype == np.float32 and factors.shape == (rows, 4)
    # The snapshot is phase 1 alone; the served factors went on from it for the warm iterations.
    assert np.all(fit.phase1[0] == CONFIG.iterations - CONFIG.warm_iterations)
    assert np.all(fit.user_factors == CONFIG.iterations) and np.all(fit.item_factors == CONFIG.iterations)


def test_gpu_without_a_partial_matrix_is_one_plain_fit(fake_gpu: type[FakeGpuAls]) -> None:
    full, _ = matrices()
    fit = fit_als(full, None, CONFIG, select_als_device("gpu"))
    (model,) = fake_gpu.created
    assert [f["iterations"] for f in model.fits] == [CONFIG.iterations]
    assert fit.phase1 is None and fit.device == "gpu" and np.all(fit.user_factors == CONFIG.iterations)


def test_the_cpu_path_is_implicits_own_two_phase_fit() -> None:
    full, partial = matrices()
    fit = fit_als(full, partial, CONFIG)
    assert (fit.device, fit.device_reason) == ("cpu", "cpu requested")
    assert fit.phase1 is not None
    assert fit.user_factors.shape == (30, 4) and fit.item_factors.shape == (20, 4)
    # Phase 2 moved the factors on from the snapshot (the same object would mean no copy was taken).
    assert not np.allclose(fit.phase1[0], fit.user_factors)

    # Same seed, same answer; and phase 1 alone is what a fit of the phase-1 iterations gives.
    again = fit_als(full, partial, CONFIG)
    np.testing.assert_array_equal(again.user_factors, fit.user_factors)
    from implicit.cpu.als import AlternatingLeastSquares

    plain = AlternatingLeastSquares(
        factors=4, regularization=CONFIG.regularization, alpha=CONFIG.alpha, iterations=12, random_state=CONFIG.seed,
        num_threads=1,
    )
    plain.fit(partial, show_progress=False)
    np.testing.assert_allclose(plain.user_factors, fit.phase1[0], rtol=1e-5, atol=1e-6)
