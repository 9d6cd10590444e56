"""Choices by timing: planted costs pick the cheaper candidate, and a stored choice is reused."""

import pytest
import torch
from torch import nn

from spectral_sweep.curvature import HessianOperator, hessian_extremes, hessian_operator
from spectral_sweep.curvature.operators import GGNOperator, curvature_operator
from spectral_sweep.trial.timing import ChoiceStore, ProductChoice, fastest, pick

LOSS = nn.CrossEntropyLoss()


class FakeClock:
    """A clock that only moves when a planted cost is paid."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def pay(self, seconds):
        self.now += seconds


def test_fastest_picks_the_cheapest_planted_candidate_and_keeps_a_near_default():
    clock = FakeClock()
    costs = {"fp32": 3.0, "bf16": 1.0, "fp16": 2.0}
    calls = {name: 0 for name in costs}

    def run(name):
        calls[name] += 1
        clock.pay(costs[name])

    timed = fastest({n: (lambda n=n: run(n)) for n in costs}, repeats=3, warmup=1, clock=clock)
    assert timed.choice == "bf16" and timed.seconds == costs
    # one warm-up and three timed calls each, except fp32: more than 2x the best after the
    # first timed round, it is not timed again
    assert calls == {"fp32": 2, "bf16": 4, "fp16": 4}
    calls = {name: 0 for name in costs}
    costs["fp16"] = 9.0
    assert fastest({n: (lambda n=n: run(n)) for n in costs}, repeats=3, clock=clock).choice == "bf16"
    assert calls == {"fp32": 2, "bf16": 4, "fp16": 2}
    assert pick({"fp32": 1.0, "bf16": 0.95}, default="fp32", margin=0.1) == "fp32"   # within the margin
    assert pick({"fp32": 1.0, "bf16": 0.8}, default="fp32", margin=0.1) == "bf16"


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def _batch(n=10):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def _planted(monkeypatch, cls, costs, clock):
    """Make each method of ``cls`` pay its planted cost on ``clock``; count the calls."""
    calls = {m: 0 for m in costs}
    real = cls._product

    def product(self, method, x, y, vs):
        calls[method] += 1
        clock.pay(costs[method])
        return real(self, method, x, y, vs)
    monkeypatch.setattr(cls, "_product", product)
    return calls


@pytest.mark.parametrize("cheap", ["double_backward", "forward_over_reverse"])
@pytest.mark.parametrize("cls", [HessianOperator, GGNOperator])
def test_auto_product_keeps_the_planted_cheaper_method(monkeypatch, cheap, cls):
    model, batch = _mlp(), _batch()
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    kind = "hessian" if cls is HessianOperator else "ggn"
    exact = curvature_operator(kind, model, LOSS, batch, method="double_backward").matvec(v)
    clock = FakeClock()
    costs = {"double_backward": 5.0, "forward_over_reverse": 5.0, cheap: 1.0}
    calls = _planted(monkeypatch, cls, costs, clock)
    auto = curvature_operator(kind, model, LOSS, batch, method=ProductChoice(clock=clock))
    products = [auto.matvec(v) for _ in range(10)]
    assert auto.product["used"] == {"10": cheap}
    assert auto.product["seconds"]["10"] == costs
    # two turns of timing (warm-up + 2 timed each = 6 products), then only the cheaper one
    other = next(m for m in costs if m != cheap)
    assert calls[other] == 3 and calls[cheap] == 10 - 3
    for hv in products:   # every product, timed or not, is the same matrix's
        torch.testing.assert_close(hv, exact)


def test_one_choice_serves_a_whole_measurement_per_number_of_samples(monkeypatch):
    clock = FakeClock()
    calls = _planted(monkeypatch, HessianOperator,
                     {"double_backward": 2.0, "forward_over_reverse": 1.0}, clock)
    choice = ProductChoice(clock=clock)
    model = _mlp()
    for _ in range(3):   # three Lanczos runs on fresh batches of one size share the choice
        found = hessian_extremes(model, LOSS, _batch(), iters=8, tol=None, method=choice)
    assert found["product"]["used"] == {"10": "forward_over_reverse"}
    assert calls["double_backward"] == 3   # timed once, in the first run only
    hessian_extremes(model, LOSS, _batch(4), iters=6, tol=None, method=choice)
    assert choice.chosen == {10: "forward_over_reverse", 4: "forward_over_reverse"}
    assert calls["double_backward"] == 6   # a new size is timed anew


def test_a_fixed_method_is_used_as_asked():
    op = hessian_operator(_mlp(), LOSS, _batch(), method="forward_over_reverse")
    op.matvec(torch.ones(op.dim, dtype=torch.float64))
    assert op.product == {"asked": "forward_over_reverse"} and op.choice is None


def test_choice_store_first_writer_wins_and_reads_back(tmp_path):
    store = ChoiceStore(tmp_path / "autotune")
    key = {"device": "cpu", "model": "vgg11", "batch": 32}
    assert store.get(key) is None
    assert store.put(key, {"precision": "fp32"}) == {"precision": "fp32"}
    assert store.put(key, {"precision": "bf16"}) == {"precision": "fp32"}   # a later timing loses
    assert ChoiceStore(tmp_path / "autotune").get(key) == {"precision": "fp32"}
    assert store.get({**key, "batch": 64}) is None
    assert [p.name for p in (tmp_path / "autotune").iterdir() if p.name.startswith(".")] == []


def test_auto_operators_of_one_network_share_their_choice(monkeypatch):
    """Sharpness tracking and the learner measure the same network again and again: the two
    methods are timed once per process, not at every measurement."""
    monkeypatch.setattr("spectral_sweep.curvature.operators._CHOICES", {})
    model = _mlp()
    first = hessian_operator(model, LOSS, _batch(), method="auto")
    for _ in range(6):
        first.matvec(torch.ones(first.dim, dtype=torch.float64))
    chosen = first.choice.chosen[10]
    calls = _planted(monkeypatch, HessianOperator, {m: 0.0 for m in ("double_backward", "forward_over_reverse")},
                     FakeClock())
    later = hessian_operator(model, LOSS, _batch(), method="auto")
    for _ in range(3):
        later.matvec(torch.ones(later.dim, dtype=torch.float64))
    assert later.choice is first.choice and calls[chosen] == 3 and sum(calls.values()) == 3
    other = hessian_operator(_mlp(), LOSS, _batch(), method="auto", bn_mode="eval")
    assert other.choice is not first.choice   # another mode (or network, or device): its own timing
