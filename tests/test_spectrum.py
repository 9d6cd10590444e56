"""The spectrum measurement of a sweep point, on small models and the synthetic dataset."""

import itertools
import json

import numpy as np
import pytest
import torch
from torch import nn

from spectral_sweep.config.spectrum import SpectrumConfig
from spectral_sweep.curvature import gradient_sqnorms, noise_scale
from spectral_sweep.curvature.spectrum import measure_spectrum
from spectral_sweep.data.load import load_dataset
from spectral_sweep.data.loaders import random_batch
from spectral_sweep.errors import UsageError

LOSS = nn.CrossEntropyLoss()
SIZES = (4, 16, 64, 256)


def measure(model, data, loss_fn, device, batch_sizes, progress=True, preconditioner=None, **options):
    """measure_spectrum with the SpectrumConfig options given flat, as a test reads best."""
    return measure_spectrum(model, data, device, SpectrumConfig(enabled=True, **options), batch_sizes,
                            loss_fn=loss_fn, preconditioner=preconditioner, progress=progress)


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", seed=0, train_size=2048, test_size=64)


def small_mlp(batch_norm=False):
    """An MLP on 4x4-pooled images (192 inputs, ~3k parameters): cheap exact curvature."""
    torch.manual_seed(0)
    norm = [nn.BatchNorm1d(16)] if batch_norm else []
    return nn.Sequential(nn.AvgPool2d(4), nn.Flatten(), nn.Linear(192, 16), *norm, nn.ReLU(),
                         nn.Dropout(0.2), nn.Linear(16, 10))


@pytest.fixture(scope="module")
def spectrum(data):
    """One full measurement, shared by the tests that only read it."""
    return measure(small_mlp(), data, LOSS, "cpu", SIZES, n_batches=4, iters=100, tol=1e-3, full=True,
                   chunk=512, density_batch_sizes=(64,), density_vectors=2, density_iters=30, progress=False)


def test_record_schema(spectrum):
    assert set(spectrum) == {"operator", "bn_mode", "extremes", "iters", "preconditioned", "batches",
                             "full", "density", "noise_scale", "product", "cost_gradients", "seconds"}
    assert spectrum["product"]["asked"] == "auto"   # the default: timed, one choice per number of samples
    assert set(spectrum["product"]["used"]) == {*map(str, SIZES), "512"}   # 512: the full-data chunks
    assert set(spectrum["product"]["used"].values()) <= {"double_backward", "forward_over_reverse"}
    assert (spectrum["operator"], spectrum["bn_mode"], spectrum["iters"]) == ("hessian", "train", 100)
    assert spectrum["preconditioned"] is False
    assert [b["batch_size"] for b in spectrum["batches"]] == list(SIZES)
    for entry in spectrum["batches"]:
        assert len(entry["lambda_max"]) == len(entry["lambda_min"]) == 4
        assert all(hi > lo for hi, lo in zip(entry["lambda_max"], entry["lambda_min"]))
        assert 4 <= entry["products"] <= 4 * 100
    assert set(spectrum["full"]) == {"lambda_max", "lambda_min", "samples"}
    assert spectrum["full"]["samples"] == 2048
    (density,) = spectrum["density"]
    assert density["batch_size"] == 64 and len(density["grid"]) == len(density["density"])
    assert abs(np.trapezoid(density["density"], density["grid"]) - 1) < 1e-2
    assert set(spectrum["noise_scale"]) == {"b_noise", "trace_sigma", "grad_sqnorm", "b_small", "b_big"}
    assert (spectrum["noise_scale"]["b_small"], spectrum["noise_scale"]["b_big"]) == (4, 256)
    assert spectrum["cost_gradients"] > 0 and spectrum["seconds"] > 0
    json.dumps(spectrum)  # plain numbers and lists only


def test_lambda_max_shrinks_with_batch_size_toward_the_full_data_value(spectrum):
    means = [np.mean(b["lambda_max"]) for b in spectrum["batches"]]
    full = spectrum["full"]["lambda_max"]
    assert all(later < earlier for earlier, later in itertools.pairwise(means)), means
    # lambda_max is convex, so E lambda_max(H_B) >= lambda_max(E H_B) = lambda_full
    assert means[0] > 2 * full
    assert full * 0.9 < means[-1] < means[0]
    assert spectrum["full"]["lambda_min"] < 0 < full


def test_warm_start_changes_cost_not_results(data):
    model = small_mlp()
    kwargs = {"n_batches": 3, "iters": 100, "tol": 1e-4, "noise_scale": False, "progress": False}
    warm = measure(model, data, LOSS, "cpu", (32, 64), warm_start=True, **kwargs)
    cold = measure(model, data, LOSS, "cpu", (32, 64), warm_start=False, **kwargs)
    for w, c in zip(warm["batches"], cold["batches"]):
        np.testing.assert_allclose(w["lambda_max"], c["lambda_max"], rtol=1e-4)
        scale = max(np.abs(c["lambda_max"]))
        np.testing.assert_allclose(w["lambda_min"], c["lambda_min"], atol=1e-4 * scale)
    again = measure(model, data, LOSS, "cpu", (32, 64), warm_start=True, **kwargs)
    assert again["batches"] == warm["batches"]  # same seed, same numbers
    # cost: 2 nominal gradients per product, weighted by samples, in gradients of the largest B
    weighted = sum(b["products"] * b["batch_size"] for b in warm["batches"]) / 64
    assert warm["cost_gradients"] == pytest.approx(2 * weighted)


def test_measurement_leaves_the_model_untouched(data):
    model = small_mlp(batch_norm=True)
    model.train()
    with torch.no_grad():
        model[3].running_mean.fill_(0.2)
    state = {k: t.clone() for k, t in model.state_dict().items()}
    result = measure(model, data, LOSS, "cpu", (8, 32), n_batches=2, iters=30,
                              operator="ggn", bn_mode="train", progress=False)
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[key]), key
    assert model.training and model[3].track_running_stats
    scale = max(max(b["lambda_max"]) for b in result["batches"])
    assert all(min(b["lambda_min"]) > -1e-4 * scale for b in result["batches"])  # the GGN is PSD


def test_preconditioner_rescales_the_spectrum(data):
    model = small_mlp()
    kwargs = {"n_batches": 2, "iters": 100, "tol": 1e-5, "noise_scale": False, "progress": False}
    plain = measure(model, data, LOSS, "cpu", (64,), **kwargs)
    dim = sum(p.numel() for p in model.parameters())
    scaled = measure(model, data, LOSS, "cpu", (64,), preconditioner=torch.full((dim,), 4.0),
                              **kwargs)
    assert scaled["preconditioned"] is True
    np.testing.assert_allclose(np.array(scaled["batches"][0]["lambda_max"]) * 4,
                               plain["batches"][0]["lambda_max"], rtol=1e-4)


def test_progress_bar_is_quiet_when_asked(data, capsys):
    measure(small_mlp(), data, LOSS, "cpu", (8,), n_batches=1, iters=5,
                     noise_scale=False, progress=False)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_bad_input_is_a_usage_error(data):
    model = small_mlp()
    for kwargs in ({"batch_sizes": (4096,)}, {"batch_sizes": (0,)}, {"batch_sizes": ()},
                   {"batch_sizes": (8,), "operator": "fisher"},
                   {"batch_sizes": (8,), "bn_mode": "frozen"}):
        with pytest.raises(UsageError):
            measure(model, data, LOSS, "cpu", progress=False, **{"n_batches": 1, "iters": 5, **kwargs})


def test_random_batches_are_distinct_samples_with_the_eval_transform(data):
    x, y = random_batch(data.train, 128, "cpu", torch.Generator().manual_seed(0))
    assert x.shape == (128, 3, 32, 32) and x.dtype == torch.float32 and len(set(y.tolist())) > 1
    assert abs(float(x.mean())) < 0.2  # normalised
    x2, _ = random_batch(data.train, 128, "cpu", torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)


def test_noise_scale_recovers_a_planted_value():
    """Linear regression y = x.w* + eps, x ~ N(0, I_d), eps ~ N(0, s^2), loss (x.w - y)^2 / 2.

    At w with delta = w - w*: G = delta, per-sample covariance Sigma = delta delta^T +
    (|delta|^2 + s^2) I (Isserlis), so tr(Sigma) = |delta|^2 + d (|delta|^2 + s^2)."""
    d, s, b_small, b_big, repeats = 10, 1.0, 2, 64, 600
    g = torch.Generator().manual_seed(0)
    w_star = torch.randn(d, generator=g, dtype=torch.float64)
    delta = torch.randn(d, generator=g, dtype=torch.float64)
    delta /= delta.norm()
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_((w_star + delta).view(1, d))

    def loss(out, y):
        return 0.5 * (out.squeeze(-1) - y).square().mean()

    def batch(b):
        x = torch.randn(b, d, generator=g, dtype=torch.float64)
        return x, x @ w_star + s * torch.randn(b, generator=g, dtype=torch.float64)

    small = [batch(b_small) for _ in range(repeats)]
    big = [batch(b_big) for _ in range(repeats)]
    estimate = noise_scale(model, loss, small, big)
    exact_g2 = 1.0
    exact_trace = 1.0 + d * (1.0 + s ** 2)

    # standard errors from the spread of the measured squared norms, through the linear estimators
    sq_small, sq_big = gradient_sqnorms(model, loss, small), gradient_sqnorms(model, loss, big)
    var_small, var_big = sq_small.var(ddof=1) / repeats, sq_big.var(ddof=1) / repeats
    se_trace = np.sqrt(var_small + var_big) / (1 / b_small - 1 / b_big)
    se_g2 = np.sqrt(b_big ** 2 * var_big + b_small ** 2 * var_small) / (b_big - b_small)
    assert abs(estimate["trace_sigma"] - exact_trace) < 4 * se_trace
    assert abs(estimate["grad_sqnorm"] - exact_g2) < 4 * se_g2
    se_ratio = estimate["b_noise"] * np.hypot(se_trace / exact_trace, se_g2 / exact_g2)
    assert abs(estimate["b_noise"] - exact_trace / exact_g2) < 4 * se_ratio
    assert se_ratio < 0.3 * exact_trace  # the test has teeth
    assert (estimate["b_small"], estimate["b_big"], estimate["gradients"]) == (2, 64, 2 * repeats)


def test_largest_only_measures_the_same_lambda_max_with_fewer_products(data):
    model = small_mlp()
    kwargs = {"n_batches": 3, "iters": 100, "tol": 1e-4, "noise_scale": False, "progress": False}
    both = measure(model, data, LOSS, "cpu", (32, 64), **kwargs)
    top = measure(model, data, LOSS, "cpu", (32, 64), extremes="largest", **kwargs)
    assert top["extremes"] == "largest" and both["extremes"] == "both"
    for t, b in zip(top["batches"], both["batches"]):
        np.testing.assert_allclose(t["lambda_max"], b["lambda_max"], rtol=1e-4)
        assert t["lambda_min"] == [None] * 3
        assert t["products"] < b["products"]
    with pytest.raises(UsageError, match="extremes"):
        measure(model, data, LOSS, "cpu", (32,), extremes="smallest", **kwargs)
