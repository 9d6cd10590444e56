"""The bad-input catalogue: every input below is refused in one line, before any job starts,
with nothing written. In-process through preflight.check_command, which cli.main runs before
Hydra launches anything (fast); test_cli_refusals.py runs a sample of 21 through the command's
entry point (4 of them in a fresh process) and checks that the folder it ran in is unchanged."""


import pytest
import torch

from spectral_sweep import preflight
from spectral_sweep.errors import UsageError

TINY = ["model=vgg11_bn", "model.width=0.125", "dataset.train_size=256", "dataset.test_size=128", "train.steps=8"]
SPECTRUM = ["spectrum=hessian"]

CATALOGUE = [
    # unknown choices, keys and launchers
    (["model=vgg99"], "unknown model 'vgg99'; choose one of: preresnet110"),
    (["batch=16,32", "optimizer=sgd,lion"], "unknown optimizer 'lion'"),
    (["dataset=emnist"], "unknown dataset 'emnist'"),
    (["train=fast"], "unknown train 'fast'"),
    (["search=golden"], "unknown search 'golden'"),
    # --cfg prints one job: a comma list there is one line, not Hydra's "Ambiguous value"
    (["--cfg", "job", "batch=8,16"], "--cfg prints one job's config: give one value to each key (batch=8,16 sweeps"),
    (["spectrum=fisher"], "unknown spectrum 'fisher'"),
    (["experiment=nope"], "unknown experiment 'nope'"),
    (["hydra/launcher=nope"], "unknown hydra/launcher 'nope'"),
    (["foo=1"], "Could not override 'foo'"),
    (["dataset=cifar100", "dataset.train_size=5"], "dataset.train_size"),
    (["optimizer=adam", "optimizer.momentum=0.9"], "optimizer.momentum"),
    (["=5"], "must be a string"),
    # _target_: does not import, is not callable, rejects its arguments, returns the wrong type
    (["model._target_=nope.Net"], "model._target_=nope.Net does not import"),
    (["model._target_=torch.nn.NoSuchNet"], "module torch.nn has no NoSuchNet"),
    (["model._target_=math.pi"], "model._target_=math.pi is not callable"),
    (["model._target_=torch.nn.Linear"], "model._target_=torch.nn.Linear rejects its arguments"),
    (["model._target_=collections.OrderedDict"], "returned a OrderedDict, not a torch.nn.Module"),
    (["model._target_=Net"], "must be a dotted path"),
    (["optimizer._target_=torch.nn.Linear"], "optimizer._target_=torch.nn.Linear is not a torch.optim.Optimizer"),
    (["optimizer._target_=torch.optim.RMSprop"], "RMSprop rejects its arguments (got an unexpected keyword"),
    (["dataset._target_=nope.make_data"], "dataset._target_=nope.make_data does not import"),
    (["dataset._target_=spectral_sweep.data.torchvision_sets.torchvision_data"],
     "torchvision_sets.torchvision_data rejects its arguments"),
    # the law under test
    (["optimizer.name=rmsprop"], "no scaling law is known for optimizer rmsprop"),
    (["optimizer.law=cubic"], "optimizer.law must be linear, sqrt or a number, got 'cubic'"),
    (["optimizer.law=-1"], "optimizer.law must be linear, sqrt or a positive number"),
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
    (["optimizer.momentum=-1"], "optimizer.momentum must be a number in [0, 1)"),
    (["optimizer.momentum=1"], "optimizer.momentum must be a number in [0, 1)"),
    (["optimizer.weight_decay=-1"], "optimizer.weight_decay must be a number >= 0"),
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
    (["train.warmup=1.5"], "train.warmup must be a number in [0, 1)"),
    (["train.stall_loss_margin=1.5"], "train.stall_loss_margin must be a number in (0, 1), got 1.5"),
    (["train.stall_acc_margin=0"], "train.stall_acc_margin must be a number in (0, 1), got 0"),
    (["train.divergence_factor=0.5"], "train.divergence_factor must be a number above 1"),
    (["train.target_acc=0"], "train.target_acc must be a number in (0, 1] or null, got 0"),
    (["train.target_acc=1.5"], "train.target_acc must be a number in (0, 1] or null, got 1.5"),
    (["train.target_acc=-1"], "train.target_acc must be a number in (0, 1] or null, got -1"),
    (["train.target_acc=0.9,1.5"], "train.target_acc must be a number in (0, 1] or null, got 1.5"),
    (["train.target_acc=abc"], "could not be converted to Float"),
    (["train.eval_batch_size=0"], "train.eval_batch_size must be a positive integer"),
    (["train.compile=maybe"], "train.compile must be one of true, false, auto, got 'maybe'"),
    # how a dataset is held: a user's streams or not; a built-in preset has its own way
    (["dataset.stream=maybe"], "dataset.stream must be one of auto, true, false, got 'maybe'"),
    (["dataset.stream=true"], "dataset.stream=true: synthetic's builder holds it in memory"),
    # search
    (["search.blowup=maybe"], "is not a valid bool"),
    (["search.tolerance=abc"], "could not be converted to Float"),
    (["search.method=golden"], "expected one of [adaptive, bisect, grid, fixed, none]"),
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
    (["spectrum.checkpoint=/no/such.pt"],
     "spectrum.checkpoint=/no/such.pt is read only with a spectrum measured there (spectrum=hessian or ggn, "
     "spectrum.at=checkpoint); add spectrum=hessian"),
    ([*SPECTRUM, "spectrum.checkpoint=/no/such.pt"], "is read only with a spectrum measured there (spectrum=hessian or "
                                                     "ggn, spectrum.at=checkpoint); add spectrum.at=checkpoint"),
    (["sharpness.every=0"], "sharpness.every must be a positive integer"),
    (["sharpness.every=abc"], "could not be converted to Integer"),
    # where the output goes
    (["out_dir=/proc/not-here"], "cannot write to the output directory /proc/not-here"),
    # issue 21: refused only after the sweep folder was written
    (["search.tolerance=1"], "search.tolerance must be a number above 1, got 1"),
    (["search.step=1"], "search.step must be a number above 1, got 1"),
    (["search.lr_min=0"], "search.lr_min must be a positive number, got 0"),
    (["search.lr_max_cap=1e-9"], "search.lr_max_cap (1e-09) must lie above search.lr_min (1e-06)"),
    (["search.start=-1"], "search.start must be a positive number or null, got -1"),
    (["search.blowup_precision=0"], "search.blowup_precision must be a positive number or null, got 0"),
    # issue 31: Ray's share of a GPU
    (["search.executor=spark"], "expected one of [local, ray]"),
    (["search.gpus_per_trial=0"], "search.gpus_per_trial must be a positive number, got 0"),
    (["search.gpus_per_trial=1.5"], "search.gpus_per_trial above 1 must be a whole number of GPUs"),
    (["search.executor=ray", "search.ray_address=127.0.0.1:1"], "search.ray_address=127.0.0.1:1: nothing answers"),
    (["model.width=0"], "model.width must be a positive number, got 0"),
    (["model.dropout=1.5"], "model.dropout must be a number in [0, 1), got 1.5"),
    (["model=preresnet110", "model.depth=5"], "PreResNet depth with basic blocks must be 6n+2"),
    (["model=wrn28_10", "model.depth=27"], "WideResNet depth must be 6n+4"),
    (["dataset.noise=-1"], "dataset.noise must be a number >= 0, got -1"),
    (["dataset.data_seed=-1"], "dataset.data_seed must be an integer >= 0 or null, got -1"),
    (["dataset.test_size=0"], "dataset.test_size must be a positive integer, got 0"),
    (["sharpness.every=5", "sharpness.batch=0"], "sharpness.batch must be a positive integer, got 0"),
    (["optimizer=lanczos_sgd", "optimizer.learner.batch=100000"],
     "optimizer.learner.batch=100000 is larger than the training set (256 samples)"),
    (["device=cuda:7"], "device=cuda:7 but "),
    # refused only after every trial trained
    ([*SPECTRUM, "spectrum.batch_sizes=[100000]"], "spectrum.batch_sizes=100000 is larger than the training set"),
    ([*SPECTRUM, "spectrum.noise_batch_sizes=[0,0]"], "spectrum.noise_batch_sizes must be a positive integer"),
    ([*SPECTRUM, "spectrum.noise_batch_sizes=[8,8]"], "spectrum.noise_batch_sizes must be two different batch sizes"),
    ([*SPECTRUM, "spectrum.full=true", "spectrum.full_subset=-1"], "spectrum.full_subset must be a positive integer"),
    ([*SPECTRUM, "spectrum.density_vectors=0", "spectrum.density_batch_sizes=[8]"],
     "spectrum.density_vectors must be a positive integer, got 0"),
    # a comma list of any key, the -m form, the sweeper's params
    (["search.tolerance=1.2,1"], "search.tolerance must be a number above 1, got 1"),
    (["search.verdict_precision=0.5,-1"], "search.verdict_precision must be a positive number or null, got -1"),
    (["-m", "batch=8,0"], "batch must be a positive integer, got 0"),
    (['+hydra.sweeper.params.batch="8,0"'], "batch must be a positive integer, got 0"),
    (["experiment=quickstart", "dataset.train_size=32"], "batch size 64 is larger than the training set (32 samples)"),
    (["optimizer=sgd,adam", "optimizer.momentum=0.5"], "Key 'momentum' not in 'AdamConfig'"),
    # reported as a failed job instead of bad input
    (["model.width=nan"], "model.width must be a positive number, got nan"),
    (["optimizer=adam", "optimizer.betas=[1.5,0.999]"], "optimizer.betas must be a number in [0, 1), got 1.5"),
    (["optimizer=adam", "optimizer.betas=[0.9]"], "optimizer.betas must be two numbers [beta1, beta2], got [0.9]"),
    # tracebacks
    (["hydra.sweep.dir=/proc/nope"], "cannot write to the output directory /proc/nope"),
    (["hydra/sweeper=nope"], "runs its sweeps with Hydra's basic sweeper only"),
    (["hydra.mode=RUN"], "hydra.mode=RUN: a sweep always runs as MULTIRUN"),
    (["hydra.job.chdir=true"], "spectral-sweep relies on hydra.job.chdir"),
    (["hydra.sweep.subdir=x"], "spectral-sweep relies on hydra.sweep.subdir"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--config-dir", "/no/such/conf"], "--config-dir /no/such/conf is not a folder"),
    # accepted silently
    (["search.tolerance=inf"], "search.tolerance must be a number above 1, got inf"),
    (["search.step=inf"], "search.step must be a number above 1, got inf"),
    (["train.divergence_factor=inf"], "train.divergence_factor must be a number above 1, got inf"),
    (["dataset.noise=inf"], "dataset.noise must be a number >= 0, got inf"),
    (["optimizer=lanczos_sgd", "optimizer.learner.momentum_cap=2"],
     "optimizer.learner.momentum_cap must be a number in [0, 1) or null, got 2"),
    (["optimizer=lanczos_sgd", "optimizer.learner.lr_cap=-1"],
     "optimizer.learner.lr_cap must be a positive number or null"),
    (["+new.key=1"], "unknown key 'new'"),
    (["+optimizer.foo=1"], "unknown key 'optimizer.foo'"),
    (["optimizer.nesterov=true", "optimizer.momentum=0"], "optimizer.nesterov=true needs optimizer.momentum > 0"),
    # writes outside the output folder
    (["out_dir="], "out_dir may not be empty"),
    (["name=../../x"], "name must be a folder inside out_dir (not absolute, no '..'), got '../../x'"),
    (["name=/abs"], "name must be a folder inside out_dir"),
    (["name="], "name may not be empty"),
    (["name=a,b"], "name and out_dir cannot be comma lists"),
    # misleading messages
    (["dataset.train_size=-5"], "dataset.train_size must be a positive integer, got -5"),
    # found only after the sweep folder was written (issue 30)
    (["name=" + "n" * 300], "the filesystem allows at most 255: shorten name"),
    (["name=team/" + "n" * 256], "name has a folder name of 256 bytes"),
    (["optimizer.lr=1e300"], "optimizer.lr=1e+300 lies outside [search.lr_min, search.lr_max_cap]"),
    (["search.start=1e-9"], "search.start=1e-09 lies outside"),
    (["model.width=1000"], "the model has 9.74e+12 parameters: weights, gradients and optimizer state alone need"),
    (["train.epochs=1e-9", "train.steps=5"], "the trial budget comes to 0 steps: 1e-09 epochs"),
    (["batch=8,128", "train.epochs=0.02"], "the trial budget comes to 0 steps: 0.02 epochs of 2 steps"),
    (["dataset.subset=64", "batch=32", "train.epochs=0.2"], "the trial budget comes to 0 steps"),
    (["train.steps=null", "dataset.budget.epochs=0.01"], "0.01 epochs of 2 steps (256 samples in batches of 128); "
                                                         "raise dataset.budget.epochs or set train.steps alone"),
    (["train.steps=null", "dataset.subset=100", "batch=64", "dataset.budget.epochs=0.4"],
     "the trial budget comes to 0 steps: 0.4 epochs of 1 steps"),
]


def command(args: list[str], out) -> list[str]:
    """The command line of a case: its flags (-m, --config-dir DIR) first, as Hydra wants them."""
    if args and args[0].startswith("-"):
        return [*args, *TINY, f"out_dir={out}"]
    return [*TINY, f"out_dir={out}", *args]


def refuse(argv) -> str:
    """What cli.main checks before Hydra launches anything; the one line it would print."""
    with pytest.raises(UsageError) as caught:
        preflight.check_command(argv)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("args, message", CATALOGUE, ids=lambda x: " ".join(x) if isinstance(x, list) else None)
def test_bad_input_is_one_line_before_any_work(tmp_path, args, message):
    out = tmp_path / "out"
    assert message in refuse(command(args, out))
    assert list(tmp_path.iterdir()) == []           # nothing written, not even the sweep folder


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
    plan = preflight.check_command([*TINY, f"out_dir={tmp_path}", "batch=8,16"])
    assert [job.config.batch for job in plan.jobs] == [8, 16]


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "imagenet", "imagenet32", "synthetic_small",
                                     "fashion_mnist", "mnist", "kmnist", "svhn"])
def test_every_built_in_dataset_passes_the_checks_that_need_no_files(tmp_path, dataset):
    """Its target imports and takes the preset's options; a torchvision preset's files are looked
    for by name (here it may download them), the others' only when the job runs."""
    vision = dataset not in ("imagenet", "imagenet32", "synthetic_small")
    plan = preflight.check_command([f"dataset={dataset}", "batch=8", f"out_dir={tmp_path}",
                                    *(["dataset.download=true"] if vision else [])])
    assert plan.jobs[0].config.dataset.name == dataset.removesuffix("_small")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dataset, message", [("cifar100", "no CIFAR100 data in /nonexistent/cifar-100-python"),
                                              ("fashion_mnist", "no FashionMNIST data in /nonexistent/FashionMNIST"),
                                              ("svhn", "no SVHN data in /nonexistent")])
def test_a_torchvision_preset_without_its_files_is_refused_before_the_sweep_folder(tmp_path, dataset, message,
                                                                                   monkeypatch):
    from spectral_sweep.data import torchvision_sets

    monkeypatch.setattr(torchvision_sets, "SYSTEM_COPIES", {})   # an installed Debian Fashion-MNIST is data too
    out = tmp_path / "out"
    found = refuse([f"dataset={dataset}", "dataset.root=/nonexistent", "model=vgg11_bn", "model.width=0.125",
                    "train.steps=8", f"out_dir={out}"])
    assert message in found and "dataset.download=true" in found
    assert list(tmp_path.iterdir()) == []


def test_the_system_copy_of_fashion_mnist_or_a_download_counts_as_its_files(tmp_path, monkeypatch):
    """Checked by name only: the Debian package's four gzipped files (planted, empty) pass, as does
    dataset.download=true; nothing is read or written."""
    from spectral_sweep.data import torchvision_sets

    system = tmp_path / "system"
    system.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        (system / name).touch()
    monkeypatch.setattr(torchvision_sets, "SYSTEM_COPIES", {"FashionMNIST": (system, "dataset-fashion-mnist")})
    argv = ["dataset=fashion_mnist", "dataset.root=/nonexistent", "model=vgg11_bn", "model.width=0.125",
            "train.steps=8", f"out_dir={tmp_path / 'out'}"]
    preflight.check_command(argv)
    (system / "t10k-labels-idx1-ubyte.gz").unlink()
    assert "no FashionMNIST data in /nonexistent/FashionMNIST" in refuse(argv)
    preflight.check_command([*argv, "dataset.download=true"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["system"]


def test_each_trial_in_flight_needs_its_own_model_in_memory(tmp_path, monkeypatch):
    """A machine with room for one VGG-16's weights, gradients and optimizer state and a half
    (planted): one trial at a time passes, two in flight are refused before anything is written."""
    from spectral_sweep.models import build_target
    from spectral_sweep.point import check

    with torch.device("meta"):
        parameters = sum(p.numel() for p in build_target("spectral_sweep.models.vgg.vgg16", 10).parameters())
    monkeypatch.setattr(check, "device_memory", lambda device: (int(1.5 * 16 * parameters), "this machine"))
    argv = ["model=vgg16", "device=cpu", "batch=8", f"out_dir={tmp_path / 'out'}"]
    assert "2 trials in flight, each with a model of 1.52e+07 parameters" in refuse([*argv, "search.parallel=2"])
    assert "set search.parallel=1" in refuse([*argv, "search.parallel=2"])
    preflight.check_command([*argv, "search.parallel=1"])
    assert list(tmp_path.iterdir()) == []
