"""One sweep point, end to end: config -> data -> trials (cached) -> search -> record.json.

Takes the resolved config as a plain dict (the CLI does the Hydra part), so a job can be run
from Python too. Resuming is built in: a finished job (same config hash) is returned as it is,
and each finished trial is cached under the job directory, so a rerun never trains twice.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import platform
import subprocess
import sys
import warnings
from functools import partial
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .data import load_dataset
from .errors import UsageError
from .learner import hooks_for, owns_lr
from .models import build_model
from .optim import momentum_of
from .outcomes import TRAINED, outcome_of
from .plots import plot_sharpness
from .records import (
    LEARNER_SEARCH,
    RECORD_FILE,
    SCHEMA,
    CorruptRecord,
    TrialCache,
    config_key,
    load_records,
    read_job_record,
    write_json_atomic,
)
from .search import NOTHING_TRAINS, SearchResult, find_max_lr, grid_search
from .theory import expected_exponent
from .train import TrialSettings, resolve_device, run_trial, train

OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
SEARCH_METHODS = ("bisect", "fixed", "grid", "none")
LEARNER_STATUS = "chosen_by_learner"   # lr_max_status of a learner's point: no lr was searched

# Keys that change how results are presented or searched, not what a trial computes.
NOT_TRIAL_IDENTITY = ("search", "spectrum", "quiet", "report", "name", "out_dir", "experiment")


def run_point(config: dict, job_dir: str | Path, sweep_dir: str | Path | None = None,
              model_label: str | None = None, job_num: int = 0, variant: str = "") -> dict:
    """Run (or resume) one sweep point and write its record; return the record.

    ``model_label`` names the model in tables (the CLI passes the config choice, e.g. wrn28_10);
    a width other than 1 is appended, so narrow and full models never share a row. ``variant``
    (the CLI passes the job's other overrides, e.g. ``optimizer.momentum=0.5``) is recorded; the
    report names the variants that differ (``tables.label_variants``). ``job_num``
    spreads parallel jobs (hydra/launcher=joblib) over the visible GPUs with device=auto.
    """
    job_dir = Path(job_dir)
    job_key = config_key(config)
    try:
        done = read_job_record(job_dir)
    except CorruptRecord as e:
        warnings.warn(f"corrupt job record, recomputing: {e}")
        done = None
    if done is not None and done.get("job_key") == job_key:
        _say(config, f"reusing finished job: {job_dir / RECORD_FILE}")
        return done

    _check_point(config)
    write_json_atomic(job_dir / "config.json", config)
    device = resolve_device(config["device"], job_num)
    model_opts = {k: v for k, v in config["model"].items() if k != "name"}
    data_opts = {k: v for k, v in config["dataset"].items() if k not in ("name", "budget")}
    data = load_dataset(config["dataset"]["name"], seed=config["seed"], **data_opts)
    make_model = partial(build_model, config["model"]["name"], data.num_classes, **model_opts)
    with torch.device("meta"):   # checks the name and options, counts parameters, costs nothing
        params = sum(p.numel() for p in make_model().parameters())
    label = model_label or config["model"]["name"]
    if model_opts.get("width", 1.0) != 1.0:
        label += f"-w{model_opts['width']:g}"

    opt_cfg = {k: v for k, v in config["optimizer"].items() if k != "lr"}
    search = config["search"]
    budget = trial_budget(config)
    settings = TrialSettings(batch_size=config["batch"],   # hook options stay in the trial key only
                             optimizer={k: v for k, v in opt_cfg.items() if k != "learner"},
                             steps=budget.get("steps"), epochs=budget.get("epochs"), seed=config["seed"],
                             device=str(device), quiet=config["quiet"],
                             **{k: v for k, v in config["train"].items() if k != "sharpness_every"})
    trial_base = {k: v for k, v in config.items() if k not in NOT_TRIAL_IDENTITY}
    trial_base["optimizer"] = opt_cfg
    trial_base["budget"] = budget
    cache = TrialCache(job_dir)
    bar = tqdm(desc=f"{opt_cfg['name']} B={config['batch']}", unit="trial",
               disable=True if config["quiet"] else None)   # None: off when not a terminal

    def trial(lr: float) -> dict:
        key = config_key(trial_base, round(lr, 12))
        result = cache.get(key)
        if result is None:
            try:
                resumable = dataclasses.replace(settings, checkpoint=str(cache.dir / f"{key}.pt"))
                result = run_trial(make_model, data, lr, resumable,
                                   hooks=hooks_for(config, data, device)).to_dict()
            except OUT_OF_MEMORY:
                raise UsageError(
                    f"out of memory training batch {config['batch']} on {device}; accumulate "
                    f"gradients over smaller pieces with train.micro_batch={max(1, config['batch'] // 4)} "
                    f"(BatchNorm statistics then come from each piece)") from None
            cache.put(key, result)
        sharpness_figure(result, job_dir)
        bar.update()
        bar.set_postfix(lr=f"{lr:.3g}", outcome=outcome_of(result))
        return result

    exponent = expected_exponent(opt_cfg["name"])
    group_key = config_key({k: v for k, v in trial_base.items() if k != "batch"})
    outcome, start = _search(search, trial, config, sweep_dir, group_key, exponent)
    bar.close()
    if cache.hits:
        _say(config, f"B={config['batch']}: reused {cache.hits} finished trial{'s' * (cache.hits != 1)} "
                     f"from {cache.dir}")

    trials = [t for _, t in outcome.trials]
    trained = [t for t in trials if outcome_of(t) == TRAINED and t["test_acc"] is not None]
    best = max(trained, key=lambda t: t["test_acc"], default=None)
    at_max = next((t for t in trials if outcome.lr_max is not None and t["lr"] == outcome.lr_max), None)
    record = {
        "schema": SCHEMA, "kind": "sweep_point",
        "model": label, "dataset": config["dataset"]["name"],
        "optimizer": opt_cfg["name"], "variant": variant, "batch_size": config["batch"], "seed": config["seed"],
        "expected_exponent": exponent, "momentum": momentum_of(**opt_cfg),
        "search": LEARNER_SEARCH if outcome.status == LEARNER_STATUS else search["method"],
        "search_start": start,
        "lr_max": outcome.lr_max, "lr_max_bracket": list(outcome.bracket), "lr_max_status": outcome.status,
        "acc_at_lr_max": at_max["test_acc"] if at_max else None,
        "lr_blowup": outcome.lr_blowup, "lr_blowup_bracket": list(outcome.blowup_bracket),
        "lr_blowup_status": outcome.blowup_status, "non_monotone": outcome.non_monotone,
        "lr_best": best["lr"] if best else None, "best_test_acc": best["test_acc"] if best else None,
        "trials": trials, "trials_reused": cache.hits,
        "steps": sum(t["steps"] for t in trials), "seconds": sum(t["seconds"] for t in trials),
        "params": params, "train_size": len(data.train), "num_classes": data.num_classes,
        "budget": budget, "job_key": job_key, "group_key": group_key,
        **provenance(device), "config": config,
    }
    if config.get("spectrum", {}).get("enabled"):
        record["spectrum"] = point_spectrum(config, make_model, data, settings, device)
    path = write_json_atomic(job_dir / RECORD_FILE, record)
    _say(config, f"{record['model']} {record['optimizer']} B={record['batch_size']}: "
                 f"{_found(outcome, trials, record['acc_at_lr_max'])}, "
                 f"{record['steps']} steps, {record['seconds']:.0f} s) -> {path}")
    if outcome.status == NOTHING_TRAINS:
        tried = [t["lr"] for t in trials]
        _say(config, f"B={config['batch']}: nothing trains: no lr in [{min(tried):.3g}, {max(tried):.3g}] "
                     f"learned in {_budget_text(budget)}; raise the budget (search.budget.steps or .epochs)")
    for line in outcome.non_monotone:
        _say(config, f"B={config['batch']}: not monotone in lr: {line}")
    return record


def _found(outcome: SearchResult, trials: list, acc_at_lr_max: float | None) -> str:
    """The job's one-line result: both edges and the accuracy at lr_max (or the learner's trial)."""
    if outcome.status == LEARNER_STATUS and trials:
        t = trials[0]
        return (f"learner trial {outcome_of(t)} (test acc {_fmt(t['test_acc'])}, "
                f"{len(t['hooks']['learner']['refreshes'])} refreshes")
    lo, hi = outcome.bracket
    blo, bhi = outcome.blowup_bracket
    return (f"lr_max={_fmt(lo)} (bracket {_fmt(lo)}..{_fmt(hi)}, {outcome.status}, "
            f"test acc {_fmt(acc_at_lr_max)}; "
            f"lr_blowup={_fmt(blo)}..{_fmt(bhi)}; {len(trials)} trials")


def trial_budget(config: dict) -> dict:
    """The length of each trial: ``search.budget`` when it sets steps or epochs, else the dataset's
    own default (``dataset.budget``: epochs for the real sets, steps for the embedded one)."""
    budget = dict(config["search"].get("budget") or {})
    if budget.get("steps") is None and budget.get("epochs") is None:
        budget = dict(config["dataset"].get("budget") or {})
    return {"steps": budget.get("steps"), "epochs": budget.get("epochs")}


def _budget_text(budget: dict) -> str:
    return f"{budget['epochs']:g} epochs" if budget.get("epochs") is not None else f"{budget['steps']} steps"


def sharpness_figure(trial: dict, job_dir: Path) -> Path | None:
    """sharpness/lr<lr>.png in the job folder for a trial that tracked sharpness (drawn once)."""
    if not (trial.get("hooks") or {}).get("sharpness", {}).get("measurements"):
        return None
    path = job_dir / "sharpness" / f"lr{trial['lr']:.4g}.png"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        plot_sharpness(trial, path)
    return path


def _check_point(config: dict) -> None:
    """The checks that need no data: fail in one line before any work is done."""
    batch = config["batch"]
    if not isinstance(batch, int) or batch <= 0:
        raise UsageError(f"batch must be a positive integer, got {batch!r}")
    lr = config["optimizer"]["lr"]
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise UsageError(f"optimizer.lr must be positive, got {lr!r}")
    method = config["search"]["method"]
    if method not in SEARCH_METHODS:
        raise UsageError(f"unknown search method '{method}'; choose one of: {', '.join(SEARCH_METHODS)}")


def _search(search: dict, trial, config: dict, sweep_dir, group_key: str, exponent: float):
    """Run the configured search; return (SearchResult, start lr)."""
    lr = float(config["optimizer"]["lr"])
    if search["method"] == "none":
        return SearchResult(None, (None, None), "not_searched", []), None
    if owns_lr(config):
        # the learner resets the lr from the curvature at step 0 and every refresh: trials at
        # other start lrs would be the same trial, so one runs whatever the search says
        if search["method"] != "fixed":
            _say(config, f"optimizer={config['optimizer']['name']} chooses its own lr: one trial "
                         f"instead of search={search['method']}")
        return SearchResult(None, (None, None), LEARNER_STATUS, grid_search(trial, [lr]).trials), lr
    if search["method"] == "fixed":
        return grid_search(trial, [lr]), lr
    if search["method"] == "grid":
        return grid_search(trial, search["lrs"]), None
    start, step = float(search["start"]), float(search["step"])
    if search.get("warm_start") and sweep_dir is not None:
        guess = warm_start_guess(sweep_dir, group_key, config["batch"], exponent)
        if guess is not None:
            start, step = guess, math.sqrt(step)
    result = find_max_lr(trial, start, tolerance=search["tolerance"], step=step,
                         lr_min=search["lr_min"], lr_max_cap=search["lr_max_cap"],
                         blowup=search.get("blowup", True), reference=search.get("reference"))
    return result, start


def point_spectrum(config: dict, make_model, data, settings: TrialSettings, device: torch.device) -> dict:
    """The curvature of this sweep point (record["spectrum"]), at init, after training or at a checkpoint.

    ``spectrum.batch_sizes: null`` measures mini-batches of this job's own batch size, so that a
    sweep over B assembles lambda_max(B) across its jobs; a list measures every size in one job.
    Training for ``at=trained`` runs the learner when the optimizer is lanczos_sgd. After training
    with Adam/AdamW the operator is preconditioned by Adam's second moments.
    """
    from .curvature import adam_preconditioner, trainable_parameters
    from .spectrum import measure_spectrum

    spec = config["spectrum"]
    optimizer = trained = None
    if spec["at"] == "init":
        torch.manual_seed(config["seed"])
        model = make_model().to(device)
    elif spec["at"] == "trained":
        steps = dataclasses.replace(settings, steps=spec["train_steps"], epochs=None, evaluate=False)
        learner = [hook for hook in hooks_for(config, data, device) if hook.owns_lr]  # lanczos_sgd
        model, optimizer, result = train(make_model, data, float(config["optimizer"]["lr"]), steps,
                                         hooks=learner)
        if not result.stable:
            raise UsageError(f"spectrum.at=trained: training at optimizer.lr={config['optimizer']['lr']} "
                             f"diverged ({result.reason}); lower optimizer.lr")
        trained = {"lr": result.lr, "steps": result.steps, "final_train_loss": result.final_train_loss,
                   "hooks": result.hooks}
    elif spec["at"] == "checkpoint":
        model = make_model().to(device)
        state = torch.load(spec["checkpoint"], map_location=device, weights_only=True)
        model.load_state_dict(state.get("model", state))
    else:
        raise UsageError(f"unknown spectrum.at '{spec['at']}'; choose one of: checkpoint, init, trained")
    preconditioner = None
    if isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW):
        preconditioner = adam_preconditioner(optimizer, trainable_parameters(model))
    out = measure_spectrum(
        model, data, torch.nn.functional.cross_entropy, device, spec["batch_sizes"] or [config["batch"]],
        n_batches=spec["n_batches"], operator=spec["operator"], bn_mode=spec["bn_mode"],
        iters=spec["iters"], tol=spec["tol"], full=spec["full"], full_subset=spec["full_subset"],
        chunk=spec["chunk"], density_batch_sizes=spec["density_batch_sizes"],
        noise_scale=spec["noise_scale"], preconditioner=preconditioner, warm_start=spec["warm_start"],
        seed=config["seed"], extremes=spec.get("extremes", "both"), progress=not config["quiet"])
    return {**out, "at": spec["at"], **({"trained": trained} if trained else {})}


def warm_start_guess(sweep_dir, group_key: str, batch: int, exponent: float) -> float | None:
    """lr_max of the nearest finished batch size of the same group, scaled by B^exponent."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.exists():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the report names corrupt records; here they just don't help
        found = [r for r in load_records(sweep_dir)
                 if r.get("group_key") == group_key and r["batch_size"] != batch
                 and r.get("lr_max_status") == "bracketed"]
    if not found:
        return None
    near = min(found, key=lambda r: abs(math.log(r["batch_size"] / batch)))
    return near["lr_max"] * (batch / near["batch_size"]) ** exponent


def provenance(device: torch.device) -> dict:
    """What produced a record: command, commit, device, versions, time."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return {"device": name, "commit": git_commit(), "command": " ".join(["spectral-sweep", *sys.argv[1:]]),
            "torch": torch.__version__, "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def git_commit() -> str:
    """The source tree's commit (with -dirty when it has uncommitted changes), or 'unknown'."""
    src = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=src, capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=src,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("-dirty" if dirty else "")) if sha else "unknown"


def _fmt(x) -> str:
    return "none" if x is None else f"{x:.4g}"


def _say(config: dict, line: str) -> None:
    """One line per job, also when quiet: where the result went is never noise."""
    tqdm.write(line)
