"""Curvature products against explicit matrices built by torch.autograd.functional."""

import pytest
import torch
from torch import nn
from torch.func import functional_call

from spectral_sweep.curvature import (
    Chunks,
    adam_preconditioner,
    curvature_mode,
    curvature_operator,
    extremes,
    flatten,
    ggn_operator,
    gradient,
    hessian_extremes,
    hessian_operator,
    lanczos,
    temporary_operator,
    trainable_parameters,
    unflatten,
)
from spectral_sweep.errors import UsageError

METHODS = ("double_backward", "forward_over_reverse")
LOSS = nn.CrossEntropyLoss()


def tiny_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Dropout(0.5), nn.Linear(5, 3)).double()


def tiny_cnn_bn():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3 * 4 * 4, 3)).double()


def batch_for(model, n=6, seed=2):
    g = torch.Generator().manual_seed(seed)
    shape = (n, 4) if isinstance(model[0], nn.Linear) else (n, 2, 6, 6)
    return torch.randn(shape, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


_EXPLICIT = {}


def explicit_hessian_matrix(model, x, y, bn_mode):
    """The Hessian and the GGN of mean cross-entropy, built entry by entry (memoised: the same
    model, batch and mode recur across tests)."""
    key = (repr(model), bn_mode, float(x.sum()), tuple(y.tolist()),
           float(flatten([p.detach() for p in model.parameters()]).sum()),
           tuple(p.requires_grad for p in model.parameters()))
    if key not in _EXPLICIT:
        _EXPLICIT[key] = _explicit(model, x, y, bn_mode)
    return _EXPLICIT[key]


def _explicit(model, x, y, bn_mode):
    params = trainable_parameters(model)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    flat0 = flatten([p.detach() for p in params])

    def loss_of(flat):
        return LOSS(functional_call(model, dict(zip(names, unflatten(flat, params))), (x,)), y)

    def outputs_of(flat):
        return functional_call(model, dict(zip(names, unflatten(flat, params))), (x,)).reshape(-1)

    with curvature_mode(model, bn_mode):
        hessian = torch.autograd.functional.hessian(loss_of, flat0, vectorize=True)
        jacobian = torch.autograd.functional.jacobian(outputs_of, flat0, vectorize=True)
        p = torch.softmax(outputs_of(flat0).view(len(y), -1), dim=1)
    # mean cross-entropy: per-sample output Hessian diag(p) - p p^T, averaged over the batch
    h_out = torch.block_diag(*[(torch.diag(pi) - torch.outer(pi, pi)) / len(y) for pi in p])
    return hessian, jacobian.T @ h_out @ jacobian


@pytest.fixture(scope="module", params=["mlp", "cnn_bn"])
def model(request):
    return {"mlp": tiny_mlp, "cnn_bn": tiny_cnn_bn}[request.param]()


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_products_equal_explicit_matrices(model, bn_mode):
    x, y = batch_for(model)
    hessian, ggn = explicit_hessian_matrix(model, x, y, bn_mode)
    v = torch.randn(hessian.shape[0], generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for method in METHODS:
        hv = hessian_operator(model, LOSS, (x, y), bn_mode=bn_mode, method=method).matvec(v)
        gv = ggn_operator(model, LOSS, (x, y), bn_mode=bn_mode, method=method).matvec(v)
        torch.testing.assert_close(hv, hessian @ v, rtol=1e-5, atol=1e-10)
        torch.testing.assert_close(gv, ggn @ v, rtol=1e-5, atol=1e-10)


def test_cnn_bn_modes_give_different_matrices():
    model = tiny_cnn_bn()
    x, y = batch_for(model)
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    train = hessian_operator(model, LOSS, (x, y), bn_mode="train").matvec(v)
    evaluation = hessian_operator(model, LOSS, (x, y), bn_mode="eval").matvec(v)
    assert (train - evaluation).norm() > 1e-3 * train.norm()


@pytest.mark.parametrize("kind", ["hessian", "ggn"])
def test_cached_graph_gives_the_same_products(model, kind):
    x, y = batch_for(model)
    g = torch.Generator().manual_seed(4)
    vs = [torch.randn(sum(p.numel() for p in model.parameters()), generator=g, dtype=torch.float64)
          for _ in range(3)]
    cached = curvature_operator(kind, model, LOSS, (x, y), cache_graph=True)
    fresh = curvature_operator(kind, model, LOSS, (x, y), cache_graph=False)
    for v in vs:
        torch.testing.assert_close(cached.matvec(v), fresh.matvec(v), rtol=1e-12, atol=1e-14)
    assert cached.products == fresh.products == 3


@pytest.mark.parametrize("kind", ["hessian", "ggn"])
@pytest.mark.parametrize("method", METHODS)
def test_chunked_products_equal_one_shot(kind, method):
    """Exact without BatchNorm, and with BatchNorm in eval mode (fixed normalisation)."""
    for model, bn_mode in ((tiny_mlp(), "train"), (tiny_cnn_bn(), "eval")):
        x, y = batch_for(model, n=12)
        chunks = [(x[:3], y[:3]), (x[3:8], y[3:8]), (x[8:], y[8:])]
        v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
        one_shot = curvature_operator(kind, model, LOSS, (x, y), bn_mode=bn_mode, method=method)
        chunked = curvature_operator(kind, model, LOSS, chunks, bn_mode=bn_mode, method=method)
        torch.testing.assert_close(chunked.matvec(v), one_shot.matvec(v), rtol=1e-10, atol=1e-12)
        assert chunked.chunk_products == 3 and chunked.products == 1


def test_train_mode_batchnorm_chunks_change_the_matrix():
    """Per-chunk batch statistics: the chunked operator averages per-chunk Hessians."""
    model = tiny_cnn_bn()
    x, y = batch_for(model, n=12)
    chunks = [(x[:6], y[:6]), (x[6:], y[6:])]
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    one_shot = hessian_operator(model, LOSS, (x, y), bn_mode="train").matvec(v)
    chunked = hessian_operator(model, LOSS, chunks, bn_mode="train").matvec(v)
    halves = sum(hessian_operator(model, LOSS, c, bn_mode="train").matvec(v) for c in chunks) / 2
    assert (chunked - one_shot).norm() > 1e-3 * one_shot.norm()
    torch.testing.assert_close(chunked, halves, rtol=1e-10, atol=1e-12)


def test_chunks_from_a_loader_function_are_reiterable():
    model = tiny_mlp()
    x, y = batch_for(model, n=8)
    chunks = Chunks(lambda: ((x[i:i + 4], y[i:i + 4]) for i in (0, 4)))
    op = hessian_operator(model, LOSS, chunks)
    v = torch.ones(op.dim, dtype=torch.float64)
    torch.testing.assert_close(op.matvec(v), op.matvec(v))
    assert op.chunk_products == 4
    with pytest.raises(UsageError):
        hessian_operator(model, LOSS, iter([(x, y)]))


def test_measurement_leaves_the_model_untouched():
    model = tiny_cnn_bn()
    model.train()
    x, y = batch_for(model)
    with torch.no_grad():  # non-trivial running statistics to protect
        model[1].running_mean.fill_(0.3)
        model[1].running_var.fill_(2.0)
    state = {k: t.clone() for k, t in model.state_dict().items()}
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    for kind in ("hessian", "ggn"):
        for method in METHODS:
            for bn_mode in ("train", "eval"):
                curvature_operator(kind, model, LOSS, (x, y), bn_mode=bn_mode, method=method).matvec(v)
    gradient(model, LOSS, (x, y))
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[key]), key
    assert model.training and model[1].training and model[1].track_running_stats
    assert all(p.grad is None for p in model.parameters())


def test_only_trainable_parameters_enter():
    model = tiny_mlp()
    model[0].weight.requires_grad_(False)
    x, y = batch_for(model)
    op = hessian_operator(model, LOSS, (x, y))
    assert op.dim == sum(p.numel() for p in model.parameters() if p.requires_grad)
    full = tiny_mlp()
    hessian, _ = explicit_hessian_matrix(full, x, y, "eval")
    n0 = full[0].weight.numel()
    v = torch.randn(op.dim, dtype=torch.float64)
    torch.testing.assert_close(op.matvec(v), hessian[n0:, n0:] @ v, rtol=1e-8, atol=1e-12)


def test_flatten_unflatten_round_trip():
    model = tiny_cnn_bn()
    params = trainable_parameters(model)
    flat = flatten(params)
    assert flat.numel() == sum(p.numel() for p in params)
    for piece, p in zip(unflatten(flat, params), params):
        assert torch.equal(piece, p)
    with pytest.raises(ValueError):
        unflatten(flat[1:], params)


def test_adam_preconditioner_and_preconditioned_operator():
    model = tiny_mlp()
    x, y = batch_for(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.99), eps=1e-6)
    for _ in range(3):
        optimizer.zero_grad()
        LOSS(model(x), y).backward()
        optimizer.step()
    params = trainable_parameters(model)
    p = adam_preconditioner(optimizer, params)
    expected = flatten([(optimizer.state[q]["exp_avg_sq"] / (1 - 0.99 ** 3)).sqrt() + 1e-6
                        for q in params])
    torch.testing.assert_close(p, expected)

    hessian, _ = explicit_hessian_matrix(model, x, y, "eval")
    scale = p.rsqrt()
    op = curvature_operator("hessian", model, LOSS, (x, y), preconditioner=p)
    v = torch.randn(op.dim, dtype=torch.float64)
    torch.testing.assert_close(op.matvec(v), scale * (hessian @ (scale * v)), rtol=1e-6, atol=1e-9)
    # same spectrum as P^-1 H
    sym = torch.linalg.eigvalsh(scale[:, None] * hessian * scale[None, :])
    nonsym = torch.linalg.eigvals(hessian / p[:, None]).real.sort().values
    torch.testing.assert_close(sym, nonsym, rtol=1e-6, atol=1e-8)

    with pytest.raises(UsageError):
        adam_preconditioner(torch.optim.Adam(tiny_mlp().parameters()), params)


def test_bad_arguments_are_usage_errors():
    model = tiny_mlp()
    x, y = batch_for(model)
    with pytest.raises(UsageError):
        hessian_operator(model, LOSS, (x, y), bn_mode="frozen")
    with pytest.raises(UsageError):
        hessian_operator(model, LOSS, (x, y), method="finite_difference")
    with pytest.raises(UsageError):
        curvature_operator("fisher", model, LOSS, (x, y))


@pytest.mark.parametrize("kind", ["hessian", "ggn"])
def test_hessian_extremes_match_the_explicit_spectrum(kind):
    model = tiny_cnn_bn()
    x, y = batch_for(model)
    hessian, ggn = explicit_hessian_matrix(model, x, y, "train")
    eigenvalues = torch.linalg.eigvalsh(hessian if kind == "hessian" else ggn)
    found = hessian_extremes(model, LOSS, (x, y), iters=200, tol=1e-8, operator=kind, bn_mode="train")
    scale = float(eigenvalues.abs().max())
    assert abs(found["lambda_max"] - float(eigenvalues[-1])) < 1e-6 * scale
    assert abs(found["lambda_min"] - float(eigenvalues[0])) < 1e-6 * scale
    assert found["products"] == found["iterations"] <= 200
    assert found["top_vector"].shape == (hessian.shape[0],)


def test_extremes_is_build_lanczos_release_with_the_operators_counts():
    model = tiny_cnn_bn()
    x, y = batch_for(model)
    # one product method for both (auto times them, and a busy machine may choose differently per
    # operator: the same numbers to rounding, not bit for bit)
    op = curvature_operator("hessian", model, LOSS, (x, y), bn_mode="train", method="double_backward")
    by_hand = lanczos(op, op.dim, iters=12, seed=4, tol=1e-6, which="largest", device=op.device,
                      restart=False)
    run = extremes("hessian", model, LOSS, (x, y), iters=12, seed=4, tol=1e-6, which="largest",
                   restart=False, method="double_backward")
    assert (run.result.ritz_values == by_hand.ritz_values).all()
    assert (run.result.weights == by_hand.weights).all()
    assert run.products == op.products == by_hand.matvecs
    assert run.samples == op.samples and run.gradient_cost == op.gradient_cost
    # the graph is cached by the double-backward product; "auto" times it against forward-over-reverse
    # and, on a busy machine, may pick the other (which caches none): pinned, the claim is deterministic
    with temporary_operator("ggn", model, LOSS, (x, y), method="double_backward") as ggn:
        ggn.matvec(torch.ones(ggn.dim, dtype=torch.float64))
        assert ggn._graph is not None                  # a cached graph while it is in use ...
    assert ggn._graph is None and ggn.products == 1    # ... dropped on exit, the counts kept


def test_extremes_of_a_diverged_model():
    model = tiny_mlp()
    with torch.no_grad():
        model[-1].weight.fill_(float("nan"))
    x, y = batch_for(model)
    with pytest.raises(FloatingPointError):
        extremes("hessian", model, LOSS, (x, y), iters=5)
    run = extremes("hessian", model, LOSS, (x, y), iters=5, nonfinite_ok=True)
    assert run.result is None and run.products == 1
