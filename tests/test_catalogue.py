"""The bad-input catalogue: every input below is refused in one line, before any job starts,
with nothing written. In-process through the checks that cli.main runs before Hydra launches
(fast); test_cli.py and test_resume.py run a few of them through the real command."""


import pytest
import torch

from spectral_sweep import cli
from spectral_sweep.config import Rule
from spectral_sweep.errors import UsageError
from spectral_sweep.learner import RULES

TINY = ["model=vgg11_bn", "model.width=0.125", "dataset.train_size=256", "dataset.test_size=128", "train.steps=8"]
SPECTRUM = ["spectrum=hessian"]

CATALOGUE = [
    # unknown choices, keys and launchers
    (["model=vgg99"], "unknown model 'vgg99'; choose one of: preresnet110"),
    (["batch=16,32", "optimizer=sgd,lion"], "unknown optimizer 'lion'"),
    (["dataset=mnist"], "unknown dataset 'mnist'"),
    (["train=fast"], "unknown train 'fast'"),
    (["search=golden"], "unknown search 'golden'"),
    (["spectrum=fisher"], "unknown spectrum 'fisher'"),
    (["experiment=nope"], "unknown experiment 'nope'"),
    (["hydra/launcher=nope"], "unknown hydra/launcher 'nope'"),
    (["foo=1"], "Could not override 'foo'"),
    (["dataset=cifar100", "dataset.train_size=5"], "dataset.train_size"),
    (["optimizer=adam", "optimizer.momentum=0.9"], "optimizer.momentum"),
    (["=5"], "must be a string"),
    (["model.name=alexnet"], "unknown model.name 'alexnet'"),
    (["dataset.name=mnist"], "unknown dataset.name 'mnist'"),
    (["batch=[1,2"], "malformed override"),
    # batch and seed, also inside comma lists
    (["batch=0"], "batch must be a positive integer, got 0"),
    (["batch=-8"], "batch must be a positive integer"),
    (["batch=abc"], "could not be converted to Integer"),
    (["batch=1.5"], "could not be converted to Integer"),
    (["batch=8,0"], "batch must be a positive integer, got 0"),
    (["batch=8,abc"], "could not be converted to Integer"),
    (["batch=8,1024"], "batch size 1024 is larger than the training set (256 samples)"),
    (["batch=100000", "dataset.train_size=10000"], "larger than the training set (10000 samples)"),
    (["seed=-1"], "seed must be an integer >= 0"),
    (["seed=abc"], "could not be converted to Integer"),
    (["seed=1.5"], "could not be converted to Integer"),
    (["seed=0,-1"], "seed must be an integer >= 0"),
    (["device=tpu"], "device must be auto, cpu, mps, cuda or cuda:N"),
    # optimizer
    (["optimizer.lr=-0.1"], "optimizer.lr must be a positive number"),
    (["optimizer.lr=0"], "optimizer.lr must be a positive number"),
    (["optimizer.lr=inf"], "optimizer.lr must be a positive number, got inf"),
    (["optimizer.lr=nan"], "optimizer.lr must be a positive number"),
    (["optimizer.lr=abc"], "could not be converted to Float"),
    (["optimizer.lr=0.1,-1"], "optimizer.lr must be a positive number"),
    (["optimizer.momentum=-1"], "optimizer.momentum must lie in [0, 1)"),
    (["optimizer.momentum=1"], "optimizer.momentum must lie in [0, 1)"),
    (["optimizer.weight_decay=-1"], "optimizer.weight_decay must be >= 0"),
    (["optimizer=lanczos_sgd", "optimizer.learner.every=0"], "optimizer.learner.every"),
    (["optimizer=lanczos_sgd", "optimizer.learner.rule=adam"], "expected one of [heavy_ball, nesterov, gd, ssgd]"),
    # train
    (["train.steps=abc"], "could not be converted to Integer"),
    (["train.steps=1.5"], "could not be converted to Integer"),
    (["train.steps=0"], "train.steps must be a positive integer"),
    (["train.epochs=-1"], "train.epochs must be a positive number"),
    (["train.micro_batch=0"], "train.micro_batch must be a positive integer"),
    (["train.micro_batch=abc"], "could not be converted to Integer"),
    (["batch=32", "train.micro_batch=64"], "train.micro_batch must be at most batch=32"),
    (["train.precision=bogus"], "expected one of [auto, fp32, bf16]"),
    (["train.schedule=bogus"], "expected one of [constant, paper, cosine]"),
    (["train.warmup=1.5"], "train.warmup must lie in [0, 1)"),
    (["train.stall_loss_margin=1.5"], "train.stall_loss_margin must lie in (0, 1), got 1.5"),
    (["train.stall_acc_margin=0"], "train.stall_acc_margin must lie in (0, 1), got 0"),
    (["train.divergence_factor=0.5"], "train.divergence_factor must be a number above 1"),
    (["train.eval_batch_size=0"], "train.eval_batch_size must be a positive integer"),
    (["train.compile=maybe"], "train.compile must be one of true, false, auto, got 'maybe'"),
    # search
    (["search.blowup=maybe"], "is not a valid bool"),
    (["search.tolerance=abc"], "could not be converted to Float"),
    (["search.method=golden"], "expected one of [bisect, grid, fixed, none]"),
    (["search=grid", "search.lrs=[0.1,-1]"], "search.lrs must be a positive number"),
    # spectrum and sharpness
    ([*SPECTRUM, "spectrum.n_batches=0"], "spectrum.n_batches must be a positive integer"),
    ([*SPECTRUM, "spectrum.iters=0"], "spectrum.iters must be a positive integer"),
    ([*SPECTRUM, "spectrum.at=bogus"], "expected one of [init, trained, checkpoint]"),
    ([*SPECTRUM, "spectrum.operator=fisher"], "expected one of [hessian, ggn]"),
    ([*SPECTRUM, "spectrum.extremes=smallest"], "expected one of [both, largest]"),
    ([*SPECTRUM, "spectrum.batch_sizes=[0]"], "spectrum.batch_sizes must be a positive integer"),
    ([*SPECTRUM, "spectrum.at=checkpoint"], "spectrum.at=checkpoint needs spectrum.checkpoint=FILE"),
    ([*SPECTRUM, "spectrum.at=checkpoint", "spectrum.checkpoint=/no/such.pt"], "/no/such.pt"),
    (["sharpness.every=0"], "sharpness.every must be a positive integer"),
    (["sharpness.every=abc"], "could not be converted to Integer"),
    # where the output goes
    (["out_dir=/proc/not-here"], "cannot write to the output directory /proc/not-here"),
]


def refuse(argv) -> str:
    """What cli.main checks before Hydra launches anything; the one line it would print."""
    with pytest.raises(UsageError) as caught:
        cli.check_choices(argv)
        cli.check_overrides(argv)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("args, message", CATALOGUE, ids=lambda x: " ".join(x) if isinstance(x, list) else None)
def test_bad_input_is_one_line_before_any_work(tmp_path, args, message):
    out = tmp_path / "out"
    assert message in refuse([*TINY, f"out_dir={out}", *args])
    if not any(a.startswith("out_dir=/proc") for a in args):
        assert not out.exists()                     # nothing written, not even the sweep folder


@pytest.mark.parametrize("content", [b"not a checkpoint", None])
def test_a_checkpoint_that_does_not_load_as_weights_is_refused(tmp_path, content):
    path = tmp_path / "model.pt"
    if content is None:
        torch.save(torch.nn.Linear(2, 2), path)      # a whole module: not loadable with weights_only
    else:
        path.write_bytes(content)
    message = refuse([*TINY, f"out_dir={tmp_path / 'out'}", *SPECTRUM, "spectrum.at=checkpoint",
                      f"spectrum.checkpoint={path}"])
    assert f"spectrum.checkpoint={path} does not load" in message


def test_the_catalogue_is_large_and_the_default_command_passes(tmp_path):
    assert len(CATALOGUE) >= 60
    cli.check_choices([*TINY, f"out_dir={tmp_path}", "batch=8,16"])
    cli.check_overrides([*TINY, f"out_dir={tmp_path}", "batch=8,16"])


def test_the_rule_choices_are_the_learners_rules():
    assert {r.value for r in Rule} == set(RULES)
