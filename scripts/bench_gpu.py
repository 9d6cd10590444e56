"""Every speed figure of issue 23 beside its reference, measured in the same run, on any device.

    python scripts/bench_gpu.py [--quick] [--device auto] [--out results/bench]

The name stays from when it was GPU-only; it runs wherever torch does. Each row prints what we
do, the reference a user would otherwise run (measured here, now, on the same model and data)
and their ratio; the issue's H200 figure is shown beside it for orientation. References:

* training: a plain eager fp32 loop (model, SGD, cross-entropy, same device-resident batches);
* compile: the same step eager;
* products: one gradient of the same batch (gradients per product);
* full-data product: a full-data gradient over the same chunks, and PyHessian's
  ``dataloader_hv_product`` over the same chunks;
* lambda_max: hessian-eigenthings' Lanczos on the same batch;
* the mission's sweep (vgg16, sgd and adam, three batch sizes, trials that train) as a wall time;
* trials in flight through Ray (``search.executor=ray``, issue 31): K trials of one round on one GPU,
  each asking 1/K of it, against the same trials one at a time in the job's process, as
  ``executor=local`` runs them on a GPU (on a CPU with ``--quick``: K = 2 one-thread trials against
  one at a time on all threads). Needs the ``ray`` extra; the GPU figure needs a GPU.

``--quick`` shrinks models, batches and the sweep so that it ends within 10 minutes on 2 CPU
cores. Results go to ``<out>/<device>.md`` with the command, commit and device.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

# a cold compile, as a sweep's first point pays it: Inductor's caches in a fresh folder, not the
# ones an earlier run (or the test suite) left under /tmp
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="bench-inductor-"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spectral_sweep.config.dataset import Budget  # noqa: E402
from spectral_sweep.config.train import TrainConfig  # noqa: E402
from spectral_sweep.curvature import Chunks, curvature_operator, gradient, hessian_extremes  # noqa: E402
from spectral_sweep.curvature.operators import CurvatureOperator  # noqa: E402
from spectral_sweep.data.load import load_dataset  # noqa: E402
from spectral_sweep.data.loaders import BatchLoader, random_batch  # noqa: E402
from spectral_sweep.models import build_model  # noqa: E402
from spectral_sweep.trial import fastpath  # noqa: E402
from spectral_sweep.trial.timing import ProductChoice, device_clock  # noqa: E402
from spectral_sweep.trial.train import CompiledForward, TrialSettings, resolve_device, run_trial  # noqa: E402

LOSS = nn.CrossEntropyLoss()


@dataclasses.dataclass
class Sizes:
    """What each part measures: the issue's sizes on a GPU, CPU-sized ones with --quick."""

    train: tuple = ("vgg16", 1.0, 128, 30)          # model, width, B, timed steps
    compile: tuple = ("vgg16_bn", 1.0, 128, 30)
    products: tuple = (("preresnet", 1.0, 1000), ("vgg16", 1.0, 128))
    full: tuple = ("preresnet", 1.0, 10_000, 1000)   # model, width, images, chunk
    top: tuple = ("vgg16", 1.0, 128)
    sweep: tuple = ("model=vgg16", "batch=128,256,512", "train.steps=200")
    ray: tuple = ("vgg16_bn", 1.0, 128, 200, 4, 8)   # model, width, B, steps a trial, K in flight, trials
    train_size: int = 50_000


QUICK = Sizes(train=("vgg16", 0.125, 32, 10), compile=("vgg11_bn", 0.125, 32, 10),
              products=(("preresnet", 0.25, 16), ("vgg16", 0.125, 32)), full=("preresnet", 0.125, 256, 32),
              top=("vgg16", 0.125, 64),
              sweep=("model=vgg16", "model.width=0.0625", "batch=16,32,64", "train.steps=20",
                     "dataset.train_size=2048", "dataset.test_size=256"),
              ray=("vgg11_bn", 0.125, 32, 60, 2, 4), train_size=2048)


class Report:
    """Rows of (figure, ours, reference, ratio, the issue's H200 figure), printed as they come."""

    def __init__(self):
        self.rows: list[tuple] = []
        self.notes: list[str] = []

    def row(self, figure: str, ours: str, reference: str, ratio: float | str | None, issue: str = "") -> None:
        text = "-" if ratio is None else ratio if isinstance(ratio, str) else f"{ratio:.2f}x"
        self.rows.append((figure, ours, reference, text, issue))
        print(f"  {figure}: {ours} | reference {reference} | ratio {text}"
              + (f" | issue (H200): {issue}" if issue else ""), flush=True)

    def note(self, line: str) -> None:
        self.notes.append(line)
        print(f"  note: {line}", flush=True)


def best_seconds(fn, repeats: int, clock, warmup: int = 1) -> float:
    """The least of ``repeats`` timed calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        fn()
        best = min(best, clock() - start)
    return best


# ----------------------------------------------------------------------------------------------
# training


def plain_loop(make_model, batches, device, steps: int, clock) -> float:
    """Seconds per step of the hand-written eager fp32 loop (after two warm-up steps)."""
    torch.manual_seed(0)
    model = make_model().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step(i=[0]):   # noqa: B006 - a counter over the fixed batches
        x, y = batches[i[0] % len(batches)]
        i[0] += 1
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    for _ in range(2):
        step()
    start = clock()
    for _ in range(steps):
        step()
    return (clock() - start) / steps


def trial_seconds(make_model, data, settings: TrialSettings, steps: int) -> float:
    """Seconds per step of a trial of ``steps`` steps (after an untimed 2-step trial)."""
    run_trial(make_model, data, 1e-3, dataclasses.replace(settings, budget=Budget(steps=2)))
    record = run_trial(make_model, data, 1e-3, dataclasses.replace(settings, budget=Budget(steps=steps)))
    return record.seconds / record.steps


def bench_training(report: Report, sizes: Sizes, data, device, clock) -> None:
    name, width, batch, steps = sizes.train
    make_model = partial(build_model, name, 10, width=width)
    print(f"\n[training] {name} width {width}, B={batch}, {steps} steps", flush=True)
    loader = BatchLoader(data.train, batch, device, train=True, seed=0)
    batches = [b for _, b in zip(range(steps + 2), loader.epoch(0))]
    plain = plain_loop(make_model, batches, device, steps, clock)
    base = TrialSettings(batch_size=batch, optimizer={"name": "sgd", "momentum": 0.9}, budget=Budget(steps=2),
                         device=str(device), evaluate=False, quiet=True)
    start = time.perf_counter()
    tuned = fastpath.tune_settings(base, make_model, data, None, {"model": name, "batch": batch})
    tune_s = time.perf_counter() - start
    chosen = f"{tuned.train.precision}, channels_last={tuned.train.channels_last}"
    for label, train, issue in ((f"trial, auto fast path ({chosen})", None, ""),
                                ("trial, forced fp32 contiguous", TrainConfig(precision="fp32", channels_last="false"),
                                 "0.92x"),
                                ("trial, bf16 + channels_last (the old CUDA default)",
                                 TrainConfig(precision="bf16", channels_last="true"), "0.77x")):
        settings = tuned if train is None else dataclasses.replace(base, train=train)
        seconds = trial_seconds(make_model, data, settings, steps)
        report.row(f"{name} w{width:g} B={batch} {label}, img/s", f"{batch / seconds:.0f}",
                   f"plain eager fp32 loop {batch / plain:.0f}", plain / seconds, issue)
    report.note(f"train.precision/channels_last=auto timed {tune_s:.1f} s on {name} w{width:g} B={batch}")


def bench_compile(report: Report, sizes: Sizes, data, device, clock) -> None:
    name, width, batch, steps = sizes.compile
    make_model = partial(build_model, name, 10, width=width)
    print(f"\n[compile] {name} width {width}, B={batch}", flush=True)
    loader = BatchLoader(data.train, batch, device, train=True, seed=0)
    x, y = next(iter(loader.epoch(0)))

    def stepper(forward_of):
        torch.manual_seed(0)
        model = make_model().to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
        forward = forward_of(model)

        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(forward(x), y).backward()
            opt.step()
        return step
    eager = best_seconds(stepper(lambda m: m), steps, clock)
    compiled = CompiledForward(device)
    start = clock()
    first = stepper(compiled)
    first()
    compile_s = clock() - start
    fast = best_seconds(first, steps, clock, warmup=0)
    start = clock()
    stepper(compiled)()   # a second trial's fresh model: no compile
    again_s = clock() - start
    report.row(f"{name} w{width:g} B={batch} torch.compile ({compiled.mode}) step, img/s",
               f"{batch / fast:.0f} after {compile_s:.1f} s of compile", f"eager {batch / eager:.0f}",
               eager / fast, "2.6x after 11 s")
    report.note(f"a second trial reusing the compiled forward: first step {again_s:.2f} s "
                f"(eager step {eager:.3f} s): compiled once per point")
    if fast < eager:
        report.note(f"{name} w{width:g} B={batch}: the compile pays back after "
                    f"{compile_s / (eager - fast):.0f} steps; train.compile=auto compiles only where "
                    "a point plans more")
    else:
        report.note(f"{name} w{width:g} B={batch}: compiled is not faster; train.compile=auto keeps eager")


# ----------------------------------------------------------------------------------------------
# curvature products


def product_costs(model, batch, clock, repeats: int = 3) -> dict[str, float]:
    """Seconds of one gradient and one product of each method (steady state: the cached graph of
    double backward built in the warm-up), round-robin so that load hits all alike."""
    v = torch.randn(sum(p.numel() for p in model.parameters()), generator=torch.Generator().manual_seed(0))
    ops = {m: curvature_operator("hessian", model, LOSS, batch, method=m)
           for m in ("double_backward", "forward_over_reverse")}
    runs = {"gradient": lambda: gradient(model, LOSS, batch), **{m: partial(op.matvec, v) for m, op in ops.items()}}
    best = {name: float("inf") for name in runs}
    for round_ in range(repeats + 1):
        for name, run in runs.items():
            start = clock()
            run()
            if round_:
                best[name] = min(best[name], clock() - start)
    return best


def bench_products(report: Report, sizes: Sizes, data, device, clock) -> None:
    print("\n[products] gradients per Hessian-vector product", flush=True)
    draws = torch.Generator().manual_seed(0)
    for name, width, batch in sizes.products:
        torch.manual_seed(0)
        model = build_model(name, 10, width=width).to(device)
        x, y = random_batch(data.train, batch, device, draws)
        seconds = product_costs(model, (x, y), clock)
        choice = ProductChoice()
        op = curvature_operator("hessian", model, LOSS, (x, y), method=choice)
        for _ in range(8):
            op.matvec(torch.randn(op.dim))
        op.release()
        label = f"{name} w{width:g} B={batch}"
        issue = {"double_backward": "7.8-8.8", "forward_over_reverse": "2.65"} if name == "preresnet" else {}
        for method in ("double_backward", "forward_over_reverse"):
            report.row(f"{label} {method}, gradients per product", f"{seconds[method]:.3f} s",
                       f"one gradient {seconds['gradient']:.3f} s", seconds[method] / seconds["gradient"],
                       issue.get(method, ""))
        report.note(f"{label}: spectrum.method=auto chose {choice.chosen.get(batch)} "
                    f"(timed: {', '.join(f'{m} {s:.3f} s' for m, s in choice.best(batch).items())})")


def pyhessian_full_product(model, chunks, v, device) -> float:
    """Seconds of PyHessian's ``dataloader_hv_product`` over the same chunks."""
    from pyhessian import hessian as PyHessian  # noqa: N812 - their class

    tool = PyHessian(model, LOSS, dataloader=chunks, cuda=device.type == "cuda")
    vs = [t.view_as(p) for t, p in zip(v.split([p.numel() for p in model.parameters()]), model.parameters())]
    start = time.perf_counter()
    tool.dataloader_hv_product(vs)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    for p in model.parameters():
        p.grad = None
    return seconds


def bench_full_data(report: Report, sizes: Sizes, data, device, clock) -> None:
    name, width, images, chunk = sizes.full
    print(f"\n[full-data product] {name} width {width}, {images} images in chunks of {chunk}", flush=True)
    torch.manual_seed(0)
    model = build_model(name, 10, width=width).to(device)
    split = data.train.select(torch.arange(images))
    loader = BatchLoader(split, chunk, device, train=False, augment=False)
    chunks = Chunks(lambda: loader.epoch(0))
    v = torch.randn(sum(p.numel() for p in model.parameters()), generator=torch.Generator().manual_seed(0))
    grad_s = best_seconds(lambda: gradient(model, LOSS, chunks), 1, clock)
    per = 50_000 / images
    for method in ("auto", "double_backward", "forward_over_reverse"):
        op = curvature_operator("hessian", model, LOSS, chunks, method=method)
        seconds = best_seconds(partial(op.matvec, v), 1, clock)
        used = f" (used {sorted(set(op.product['used'].values()))})" if method == "auto" else ""
        report.row(f"{name} w{width:g} full-data product, {method}{used}, gradient-equivalents",
                   f"{seconds:.2f} s ({seconds * per:.0f} s per 50k)",
                   f"full-data gradient {grad_s:.2f} s", seconds / grad_s, "goal <= 3")
    model.eval()
    peer = pyhessian_full_product(model, list(loader.epoch(0)), v.to(device), device)
    for method in ("auto", "double_backward"):   # PyHessian's algorithm is double backward
        op = curvature_operator("hessian", model, LOSS, chunks, method=method, bn_mode="eval")
        ours = best_seconds(partial(op.matvec, v), 1, clock)
        report.row(f"{name} w{width:g} full-data product, BN eval as PyHessian computes it, {method}",
                   f"ours {ours:.2f} s", f"PyHessian dataloader_hv_product {peer:.2f} s", peer / ours,
                   "74 s per 50k, the same as PyHessian")


# ----------------------------------------------------------------------------------------------
# lambda_max


class ProductTimer:
    """Adds up the seconds spent inside curvature products (device-synchronised), by wrapping
    ``CurvatureOperator.matvec`` for the duration of a ``with`` block."""

    def __init__(self, clock):
        self.clock, self.seconds = clock, 0.0

    def __enter__(self):
        self.real = CurvatureOperator.matvec
        timer = self

        def matvec(op, v):
            start = timer.clock()
            out = timer.real(op, v)
            timer.seconds += timer.clock() - start
            return out
        CurvatureOperator.matvec = matvec
        return self

    def __exit__(self, *exc):
        CurvatureOperator.matvec = self.real


def eigenthings_top(model, batch, steps: int) -> tuple[float, float]:
    """hessian-eigenthings' Lanczos for the top eigenvalue: (lambda_max, seconds)."""
    import hessian_eigenthings as he

    start = time.perf_counter()
    operator = he.HessianOperator(model, [batch], he.supervised_loss(LOSS))
    result = he.lanczos(operator, k=1, max_iter=steps, which="LA", seed=0)
    return float(result.eigenvalues[0]), time.perf_counter() - start


def bench_top(report: Report, sizes: Sizes, data, device, clock) -> None:
    name, width, batch = sizes.top
    print(f"\n[lambda_max] {name} width {width}, B={batch}", flush=True)
    torch.manual_seed(0)
    model = build_model(name, 10, width=width).to(device).eval()
    x, y = random_batch(data.train, batch, device, torch.Generator().manual_seed(1))
    hessian_extremes(model, LOSS, (x, y), iters=5, tol=None, which="largest", bn_mode="eval")   # warm-up
    with ProductTimer(clock) as products:
        start = clock()
        found = hessian_extremes(model, LOSS, (x, y), iters=100, tol=1e-3, which="largest", bn_mode="eval")
        ours = clock() - start
    report.row(f"{name} w{width:g} B={batch} hessian_extremes: share of time in products",
               f"{products.seconds:.2f} of {ours:.2f} s, {found['products']} products", "all of its time",
               f"{products.seconds / ours:.0%}", "about 50%")
    peer_value, peer = eigenthings_top(model, (x, y), 20)
    gap = abs(peer_value - found["lambda_max"]) / abs(found["lambda_max"])
    report.row(f"{name} w{width:g} B={batch} lambda_max, seconds", f"ours {ours:.2f} s (tol 1e-3)",
               f"hessian-eigenthings lanczos 20 steps {peer:.2f} s (rel. diff {gap:.1e})", peer / ours)


# ----------------------------------------------------------------------------------------------
# the mission's sweep


def bench_sweep(report: Report, sizes: Sizes, device) -> None:
    args = [*sizes.sweep, "optimizer=sgd,adam", "quiet=true", f"device={device}", "report=false"]
    print(f"\n[sweep] spectral-sweep {' '.join(args)}", flush=True)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "spectral_sweep.cli", *args, f"out_dir={out}",
                               "name=bench"], cwd=out, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"the sweep failed:\n{done.stderr[-2000:]}")
        records = [json.loads(p.read_text()) for p in Path(out, "bench").rglob("record.json")]
    trials = sum(len(r["trials"]) for r in records)
    steps = sum(r["steps"] for r in records)
    report.row(f"mission sweep ({' '.join(sizes.sweep)}, sgd and adam), wall time",
               f"{wall:.0f} s for {len(records)} jobs, {trials} trials, {steps} steps", "-", None,
               "6 jobs, 67 s (200-step trials, before this issue)")


def no_hooks() -> list:
    return []


def bench_ray(report: Report, sizes: Sizes, data, device, clock) -> None:
    """K trials of a round at once as Ray tasks (1/K of the GPU each) against one at a time inline."""
    try:
        from spectral_sweep.point import executor, ray_pool
        from spectral_sweep.point.store import TrialCache
        from spectral_sweep.point.trials import KeepTrial
    except ImportError as e:
        report.note(f"ray part skipped: {e}")
        return
    if not ray_pool.available():
        report.note("ray part skipped: Ray is not installed (pip install -e '.[ray]')")
        return
    name, width, batch, steps, k, n = sizes.ray
    on_gpu = device.type == "cuda"
    print(f"\n[ray] {name} width {width}, B={batch}, {n} trials of {steps} steps, {k} in flight", flush=True)
    settings = TrialSettings(batch_size=batch, optimizer={"name": "sgd", "momentum": 0.9}, budget=Budget(steps=steps),
                             device=str(device), quiet=True, train=TrainConfig(precision="fp32", channels_last="false"))
    jobs = [(0.01 * 1.5 ** i, f"t{i}", i) for i in range(n)]
    with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as many:
        work = KeepTrial(partial(build_model, name, 10, width=width), data, settings, no_hooks, TrialCache(one))
        start = time.perf_counter()
        alone = [work(*job) for job in jobs]
        alone_s = time.perf_counter() - start
        started = time.perf_counter()
        ray_pool.connect(None, cpus=torch.get_num_threads())
        up_s = time.perf_counter() - started
        pool = executor._ray_pool(dataclasses.replace(work, cache=TrialCache(many)).away(), k,
                                  gpus_per_trial=1 / k if on_gpu else 0.0)
        try:
            pool.map([(lr, f"warm{key}", seed) for lr, key, seed in jobs[:k]])   # each worker imports torch once
            start = time.perf_counter()
            together = pool.map(jobs)
            together_s = time.perf_counter() - start
        finally:
            pool.close()
    same = [a.outcome for a in alone] == [b.outcome for b in together]
    where = f"1/{k} of the GPU each" if on_gpu else f"{pool.threads} thread(s) each"
    report.row(f"{n} trials of {name} w{width:g} B={batch}, {steps} steps: {k} in flight on Ray ({where}), "
               "trials/s", f"{n / together_s:.2f}", f"one at a time in the job's process {n / alone_s:.2f}",
               alone_s / together_s, "2.2x (4 processes sharing one GPU, VGG-16-BN B=128)")
    report.note(f"ray: a local instance started in {up_s:.1f} s, not timed, nor the workers' first trials; "
                f"the same outcomes as one at a time: {same}")


# ----------------------------------------------------------------------------------------------
# the report file


def device_label(device: torch.device) -> tuple[str, str]:
    """(file stem, description) of the device: a GPU's name, or the CPU's model and threads."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return name.lower().replace(" ", "-"), name
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    return "cpu", f"{model}, {torch.get_num_threads()} torch threads"


def write_markdown(report: Report, path: Path, device: torch.device, command: str, seconds: float) -> None:
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    _, described = device_label(device)
    lines = [f"# Speed figures on {described}", "",
             "Written by `scripts/bench_gpu.py`; every ratio is against a reference measured in the same run.", "",
             f"- command: `{command}`", f"- commit: {commit}", f"- device: {described}",
             f"- torch {torch.__version__}, Python {platform.python_version()}", f"- wall time: {seconds:.0f} s", "",
             "| figure | ours | reference (same run) | ratio | the issue's H200 figure |", "|---|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in report.rows]
    lines += ["", *[f"- {note}" for note in report.notes], ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    print(f"\nwrote {path}")


PARTS = ("training", "compile", "products", "full", "top", "sweep", "ray")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CPU-sized: within 10 minutes on 2 cores")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    ap.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    sizes = QUICK if args.quick else Sizes()
    clock = device_clock(device)
    began = time.perf_counter()
    data = load_dataset("synthetic", seed=0, train_size=sizes.train_size, test_size=256)
    print(f"{device_label(device)[1]}, torch {torch.__version__}; data {time.perf_counter() - began:.1f} s")
    report = Report()
    parts = {"training": bench_training, "compile": bench_compile, "products": bench_products,
             "full": bench_full_data, "top": bench_top, "ray": bench_ray}
    for part in args.only:
        if part == "sweep":
            bench_sweep(report, sizes, device)
        else:
            parts[part](report, sizes, data, device, clock)
    command = "python scripts/bench_gpu.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_markdown(report, args.out / f"{device_label(device)[0]}.md", device, command.strip(),
                   time.perf_counter() - began)


if __name__ == "__main__":
    main()
