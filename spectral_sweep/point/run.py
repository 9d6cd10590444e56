"""One sweep point, end to end: config -> data and model -> trials -> search -> spectrum -> record.json.

Takes a typed ``config.Config`` (the CLI does the Hydra part; ``config.compose`` gives one from
Python). Resuming is built in: a finished job (same config hash) is returned as it is, and each
finished trial is cached under the job directory, so a rerun never trains twice.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from functools import partial
from pathlib import Path

import torch
from tqdm.auto import tqdm

from spectral_sweep.config.schema import Config
from spectral_sweep.curvature.learner import hooks_for, owns_lr
from spectral_sweep.curvature.spectrum import SpectrumRecord, point_spectrum
from spectral_sweep.data.load import load_dataset
from spectral_sweep.files import CorruptRecord, config_key, set_aside, write_json_atomic
from spectral_sweep.models import build_target
from spectral_sweep.point import executor
from spectral_sweep.point.check import check_job
from spectral_sweep.point.contract import check_contract
from spectral_sweep.point.record import LEARNER, JobRecord, device_name, provenance
from spectral_sweep.point.store import (
    RECORD_FILE,
    TrialCache,
    finished_job,
    job_lock,
    load_records,
    write_job_record,
)
from spectral_sweep.point.trials import EXPECTED_OPTIMUM_TRIALS, EXPECTED_TRIALS, TrialRunner
from spectral_sweep.search.adaptive import find_edges, priors_from
from spectral_sweep.search.bisect import locate
from spectral_sweep.search.group import settles_verdict
from spectral_sweep.search.optimum import OptimumSearch
from spectral_sweep.search.result import BRACKETED, CHOSEN_BY_LEARNER, NOTHING_TRAINS, SearchResult
from spectral_sweep.trial import fastpath
from spectral_sweep.trial.optim import momentum_of
from spectral_sweep.trial.outcomes import TRAINED, best_trial, noise_check
from spectral_sweep.trial.train import TrialSettings, resolve_device

# Parts of the config that change how results are searched or shown, not what a trial computes.
NOT_TRIAL_IDENTITY = ("search", "spectrum", "quiet", "report", "name", "out_dir")


def run_point(config: Config, job_dir: str | Path, sweep_dir: str | Path | None = None,
              model_label: str | None = None, job_num: int | None = None, variant: str = "",
              launcher: str = "basic") -> JobRecord:
    """Run (or resume) one sweep point, write its record.json and return the record.

    ``model_label`` names the model in tables (the CLI passes the config choice, e.g. wrn28_10).
    ``variant`` (the job's other overrides, e.g. ``optimizer.momentum=0.5``) is recorded for the
    report. ``job_num``, the job's place in the sweep, spreads parallel jobs over the visible GPUs
    with device=auto, and a job learns (warm start, the edge's spread) only from the finished jobs
    before it, so that its result never depends on which later job finished first; None (a
    Python caller running points one by one): from every finished job of the sweep. ``launcher``
    is Hydra's: only ``basic`` runs the jobs one after another, so under any other (joblib,
    submitit) a job learns from no other job and starts cold: which earlier jobs had finished when
    it started is up to the launcher's timing, and its record must not be.
    """
    job_dir = Path(job_dir)
    check_job(config)   # the CLI did this for every job already; a Python caller may not have
    with job_lock(job_dir, on_wait=lambda: _say(f"B={config.batch}: another process is running this job "
                                                f"({job_dir}); waiting for it")):
        return _run_point(config, job_dir, sweep_dir, model_label, job_num, variant, launcher)


def _run_point(config: Config, job_dir: Path, sweep_dir, model_label, job_num: int, variant: str,
               launcher: str) -> JobRecord:
    job_key = config_key(config.to_dict())
    done = _finished(job_dir, job_key)
    if done is not None:
        _say(f"reusing finished job: {done.record_path}")
        return done
    device = resolve_device(config.device, job_num or 0)
    data = load_dataset(config.dataset._target_, root=config.dataset.root, subset=config.dataset.subset,
                        test_subset=config.dataset.test_subset, seed=config.seed, stream=config.dataset.stream,
                        **config.dataset.options())
    make_model = partial(build_target, config.model._target_, data.num_classes,
                         input_shape=(data.channels, data.image_size), **config.model.options())
    check_contract(data, make_model, device, batch=config.batch, seed=config.seed,   # before any trial or file
                   dataset=_culprit("dataset", config.dataset._target_, config.dataset.name),
                   model=_culprit("model", config.model._target_, model_label or config.model.name))
    write_json_atomic(job_dir / "config.json", config.to_dict())
    settings = trial_settings(config, device)
    timed: list[float] = []   # seconds a step of the fast path, where it was timed
    settings = fastpath.for_point(config, settings, make_model, data, sweep_dir or job_dir,   # auto: by timing
                                  on_timed=timed.append, trials=1 if owns_lr(config.optimizer) else None)
    identity = trial_identity(config)
    adaptive = in_rounds(config)
    in_flight = executor.in_flight(config.search, str(device)) if adaptive else 1
    cap = planned_cap(config) or None
    runner = TrialRunner(make_model, data, settings, _hooks(config, data, device), identity, TrialCache(job_dir),
                         in_flight=in_flight, cap=cap, open_pool=executor.pool_opener(config.search, str(device)),
                         typical=_typical_trials(config, adaptive))
    if timed:   # timed on all threads; K trials in flight share them: a step of each takes up to K x as long
        runner.say_cost(timed[0] * in_flight, "timed before the first trial")
    group_key = config_key({k: v for k, v in identity.items() if k != "batch"})
    earlier = earlier_points(config, sweep_dir, group_key, job_num) if launcher == "basic" else []
    start, warm_from = warm_start(config, earlier)
    try:
        if adaptive:
            outcome = search_adaptive(config, runner, start, earlier)
        else:
            outcome = locate(config.search, runner, config.optimizer.lr, start, owns_lr=owns_lr(config.optimizer))
    finally:
        runner.close()
    if owns_lr(config.optimizer) and str(config.search.method) not in ("fixed", "none"):
        _say(f"optimizer={config.optimizer.name} chooses its own lr: one trial instead of "
             f"search={config.search.method}")
    spectrum = _spectrum(config, make_model, data, settings, device) if config.spectrum.enabled else None
    record = make_record(config, outcome, settings, data, job_key, group_key, spectrum, device,
                         label=_label(config, model_label), variant=variant, reused=runner.cache.hits,
                         params=_count_parameters(make_model), start=_search_start(config, outcome, start),
                         job_num=job_num or 0)
    record.launcher, record.in_flight = launcher, in_flight
    record.warm_from = warm_from.batch_size if warm_from is not None else None
    record.learned_from = sorted({r.batch_size for r in earlier}) if adaptive else []
    record.record_path = str(write_job_record(job_dir, record))
    _announce(record, outcome, runner.cache)
    return record


def _culprit(group: str, target: str, preset: str | None) -> str:
    """How a refusal names a dataset or model: its ``_target_``, and the preset chosen where it has a name."""
    return f"{group}._target_={target}" + (f" ({group}={preset})" if preset and preset != target.rpartition(".")[2]
                                           else "")


def _spectrum(config: Config, make_model, data, settings: TrialSettings, device) -> SpectrumRecord:
    """The point's curvature, measured with this job's settings (the learner trains for at=trained)."""
    def learner():
        hooks = hooks_for(config.optimizer, config.sharpness, config.batch, config.seed, data, device)
        return [hook for hook in hooks if hook.owns_lr]

    return point_spectrum(config.spectrum, make_model, data, settings, device, batch=config.batch, seed=config.seed,
                          lr=config.optimizer.lr, learner=learner, progress=not config.quiet)


def _finished(job_dir: Path, job_key: str) -> JobRecord | None:
    """The job's record when an earlier run of the same config finished it."""
    try:
        done = finished_job(job_dir)
    except CorruptRecord as e:
        aside = set_aside(Path(job_dir) / RECORD_FILE)
        warnings.warn(f"corrupt job record, set aside as {aside.name}; recomputing: {e}", stacklevel=3)
        return None
    return done if done is not None and done.job_key == job_key else None


def trial_settings(config: Config, device: torch.device) -> TrialSettings:
    """How every trial of this point trains, apart from the lr."""
    return TrialSettings(batch_size=config.batch, optimizer=config.optimizer.options(),
                         budget=config.train.budget(config.dataset), train=config.train, seed=config.seed,
                         device=str(device), quiet=config.quiet)


def _hooks(config: Config, data, device):
    """The training hooks of this point's trials (learner, sharpness tracking), made fresh per trial."""
    return partial(hooks_for, config.optimizer, config.sharpness, config.batch, config.seed, data, device)


def trial_identity(config: Config) -> dict:
    """Everything that decides a trial's result, apart from its lr: the key of the trial cache."""
    identity = {k: v for k, v in config.to_dict().items() if k not in NOT_TRIAL_IDENTITY}
    identity["optimizer"].pop("lr")
    identity["train"].pop("checkpoint_every")   # when a trial saves decides nothing of its result
    if identity["train"]["target_acc"] is None:   # off: the key a trial had before the knob, so older
        del identity["train"]["target_acc"]        # sweeps still reuse their finished trials
    if identity["dataset"].get("stream") == "auto":   # the default: the key trials had before the knob
        del identity["dataset"]["stream"]
    identity["budget"] = dataclasses.asdict(config.train.budget(config.dataset))
    return identity


def earlier_points(config: Config, sweep_dir, group_key: str, job_num: int | None) -> list[JobRecord]:
    """The finished records of this curve's other batch sizes that came before this job in the sweep."""
    if sweep_dir is None or not Path(sweep_dir).exists():
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the report names corrupt records; here they just don't help
        found = load_records(sweep_dir)
    return [r for r in found if r.group_key == group_key and r.batch_size != config.batch
            and (job_num is None or r.job_num < job_num)]


def warm_start(config: Config, earlier: list[JobRecord]) -> tuple[float | None, JobRecord | None]:
    """lr_max of the nearest earlier batch size of the same curve, scaled by B^exponent, and that
    record; (None, None): a cold start."""
    if not (config.search.warm_start and str(config.search.method) in ("bisect", "adaptive")):
        return None, None
    found = [r for r in earlier if r.lr_max_status == "bracketed" and isinstance(r.lr_max, (int, float))]
    if not found:
        return None, None
    near = min(found, key=lambda r: abs(math.log(r.batch_size / config.batch)))
    start = near.lr_max * (config.batch / near.batch_size) ** config.optimizer.exponent()
    return min(max(start, config.search.lr_min), config.search.lr_max_cap), near   # a search tries no lr outside


def search_adaptive(config: Config, runner: TrialRunner, start: float | None, earlier: list[JobRecord]):
    """search=adaptive: both edges from fresh-seed trials, the spread shared with earlier points."""
    search = config.search
    warm = start is not None
    first = start if warm else (search.start if search.start is not None else config.optimizer.lr)
    priors = priors_from([[(t.lr, t.outcome) for t in r.trials] for r in earlier])
    opt = OptimumSearch(str(search.objective), search.opt_precision, search.opt_trials) if search.optimum else None
    bracketed = [(r.batch_size, r.lr_max, r.lr_max_se) for r in earlier if r.lr_max_status == BRACKETED]
    settled = settles_verdict(bracketed, config.batch, config.optimizer.exponent(), search.verdict_precision)
    test = runner.data.test
    noise = noise_check(runner.data.num_classes, len(test) if test is not None else None,
                        config.train.stall_acc_margin, config.train.target_acc)
    return find_edges(runner.run_round, float(first), precision=search.precision, max_trials=search.max_trials,
                      parallel=runner.in_flight, step=math.sqrt(search.step) if warm else search.step,
                      tolerance=search.tolerance, lr_min=search.lr_min, lr_max_cap=search.lr_max_cap,
                      blowup=search.blowup, reference=search.reference, priors=priors, opt=opt,
                      blowup_precision=search.blowup_precision, settled=settled, noise=noise)


def _search_start(config: Config, outcome: SearchResult, warm: float | None) -> float | None:
    """The first lr tried: the warm start, the bisection's cold start, or the one lr of fixed/learner."""
    method = str(config.search.method)
    if method in ("bisect", "adaptive") and outcome.status != CHOSEN_BY_LEARNER:
        return warm if warm is not None else (config.search.start or config.optimizer.lr)
    return config.optimizer.lr if method == "fixed" or outcome.status == CHOSEN_BY_LEARNER else None


def make_record(config: Config, outcome: SearchResult, settings: TrialSettings, data, job_key: str,
                group_key: str, spectrum: SpectrumRecord | None, device, *, label: str, variant: str,
                reused: int, params: int, start: float | None, job_num: int = 0) -> JobRecord:
    """The job's record: the point, both edges with their trials, cost and provenance."""
    trials = [t for _, t in outcome.trials]
    best = best_trial(trials)
    at_max = _trial_at(trials, outcome.lr_max)
    fit, blow, peak = outcome.estimate, outcome.blowup_estimate, outcome.optimum
    opt = config.optimizer
    return JobRecord(
        model=label, dataset=config.dataset.name, optimizer=opt.name, variant=variant,
        batch_size=config.batch, seed=config.seed, expected_exponent=opt.exponent(),
        momentum=momentum_of(**opt.options()), nesterov=bool(getattr(opt, "nesterov", False)),
        search=LEARNER if outcome.status == CHOSEN_BY_LEARNER else str(config.search.method),
        search_start=start, lr_max=outcome.lr_max, lr_max_bracket=list(outcome.bracket),
        lr_max_status=outcome.status, lr_max_problem=outcome.problem,
        acc_at_lr_max=at_max.test_acc if at_max else None,
        lr_blowup=outcome.lr_blowup, lr_blowup_bracket=list(outcome.blowup_bracket),
        lr_blowup_status=outcome.blowup_status, non_monotone=outcome.non_monotone,
        lr_max_se=fit.log_se if fit else None, lr_safe=fit.lr_safe if fit else None,
        edge_spread=fit.spread if fit else None, lr_blowup_se=blow.log_se if blow else None, job_num=job_num,
        lr_best=best.lr if best else None, best_test_acc=best.test_acc if best else None,
        **_optimum_fields(peak, config), lr_opt_trials=outcome.optimum_trials, capped=outcome.capped,
        settled=outcome.settled,
        trials=trials, trials_reused=reused, steps=sum(t.steps for t in trials),
        seconds=sum(t.seconds for t in trials), params=params, train_size=len(data.train),
        test_size=len(data.test), num_classes=data.num_classes, budget=dataclasses.asdict(settings.budget),
        job_key=job_key, group_key=group_key, spectrum=spectrum, device=device_name(device), config=config.to_dict(),
        **provenance())


def in_rounds(config: Config) -> bool:
    """The adaptive search runs K trials at once, a round; bisect, a grid, a fixed lr and a learner
    that chooses its own lr run one trial after another."""
    return str(config.search.method) == "adaptive" and not owns_lr(config.optimizer)


def planned_cap(config: Config) -> int:
    """The most trials this job's point makes: its search's cap, or one where the optimizer sets
    its own lr (a learner runs one trial whatever the search)."""
    return 1 if owns_lr(config.optimizer) and str(config.search.method) != "none" else trial_cap(config.search)


def _typical_trials(config: Config, adaptive: bool) -> int:
    """The trials a point usually makes, for its cost line's "about": the adaptive search's from its
    calibration; the others as the fast path plans them (a bisection's with its reference trial);
    a learner its one."""
    if adaptive:
        return EXPECTED_TRIALS + (EXPECTED_OPTIMUM_TRIALS if config.search.optimum else 0)
    if owns_lr(config.optimizer):
        return planned_cap(config)
    reference = str(config.search.method) == "bisect" and config.search.reference is not None
    return fastpath.planned_trials(config.search) + reference


def trial_cap(search) -> int:
    """The most trials a point's search makes (the plan line's): adaptive, the edges', the reference
    and lr_opt's own; bisect, the edges' and the reference (it finds no lr_opt); one per lr of a grid."""
    method = str(search.method)
    if method in ("fixed", "none"):
        return 1 if method == "fixed" else 0
    if method == "grid":
        return len(search.lrs)
    optimum = search.opt_trials if search.optimum and method == "adaptive" else 0
    return search.max_trials + (1 if search.reference else 0) + optimum


def _optimum_fields(fit, config: Config) -> dict:
    """The record's lr_opt fields from the search's optimum.OptimumFit (all None where not asked)."""
    if fit is None:
        return {}
    return dict(lr_opt=fit.lr, lr_opt_bracket=[fit.lo, fit.hi], lr_opt_status=fit.status, lr_opt_se=fit.log_se,
                quality_at_opt=fit.quality, objective=str(config.search.objective))


def _trial_at(trials, lr: float | None):
    """The trial that tells the accuracy at lr_max: the one at it (bisect), else the trained trial
    nearest to it in log lr (an estimated edge lies between trials)."""
    if lr is None:
        return None
    exact = next((t for t in trials if t.lr == lr), None)
    trained = [t for t in trials if t.outcome == TRAINED]
    return exact or min(trained, key=lambda t: abs(math.log(t.lr / lr)), default=None)


def _label(config: Config, model_label: str | None) -> str:
    """The model's name in tables; a width other than 1 is appended, so narrow and full models never share a row."""
    label = model_label or config.model.name or config.model._target_.rpartition(".")[2]
    return label + (f"-w{config.model.width:g}" if config.model.width != 1.0 else "")


def _count_parameters(make_model) -> int:
    with torch.device("meta"):   # costs nothing
        return sum(p.numel() for p in make_model().parameters())


def _announce(record: JobRecord, outcome: SearchResult, cache: TrialCache) -> None:
    """What the job found, in a few lines that are printed also when quiet."""
    b = record.batch_size
    if cache.hits:
        _say(f"B={b}: reused {cache.hits} finished trial{'s' * (cache.hits != 1)} from {cache.dir}")
    _say(f"{record.model} {record.optimizer} B={b}: {_found(record, outcome)}, {record.steps} steps, "
         f"{record.seconds:.0f} s) -> {record.record_path}")
    if outcome.status == NOTHING_TRAINS:
        tried = [t.lr for t in record.trials]
        _say(f"B={b}: nothing trains: no lr in [{min(tried):.3g}, {max(tried):.3g}] learned in "
             f"{_budget_text(record.budget)}; raise the budget (train.steps or train.epochs)")
    if outcome.problem:
        _say(f"B={b}: lr_max inconclusive: {outcome.problem}; not fitted")
    for line in outcome.non_monotone:
        _say(f"B={b}: not monotone in lr: {line}")


def _found(record: JobRecord, outcome: SearchResult) -> str:
    """The job's one-line result: both edges and the accuracy at lr_max (or the learner's trial)."""
    if outcome.status == CHOSEN_BY_LEARNER and record.trials:
        t = record.trials[0]
        return (f"learner trial {t.outcome} (test acc {_fmt(t.test_acc)}, "
                f"{len(t.hooks['learner']['refreshes'])} refreshes")
    lo, hi = outcome.bracket
    blo, bhi = outcome.blowup_bracket
    if outcome.estimate is not None:
        return (f"lr_max={_fmt(outcome.lr_max)} (95% {_fmt(lo)}..{_fmt(hi)}, lr_safe={_fmt(record.lr_safe)}, "
                f"spread {outcome.estimate.spread:.2f}, test acc near it {_fmt(record.acc_at_lr_max)}; "
                f"lr_blowup={_fmt(outcome.lr_blowup)} (95% {_fmt(blo)}..{_fmt(bhi)}){_optimum_text(record)}; "
                f"{len(record.trials)} trials{_settled_text(outcome, record.config['search']['precision'])}")
    capped = f" (stopped at search.max_trials={record.config['search']['max_trials']})" if outcome.capped else ""
    return (f"lr_max={_fmt(lo)} (bracket {_fmt(lo)}..{_fmt(hi)}, {outcome.status}, "
            f"test acc {_fmt(record.acc_at_lr_max)}; lr_blowup={_fmt(blo)}..{_fmt(bhi)}; "
            f"{len(record.trials)} trials{capped}")


def _settled_text(outcome: SearchResult, precision: float) -> str:
    """Why an adaptive point stopped short of search.precision: its group's verdict no longer depends on it."""
    if not outcome.settled:
        return ""
    return (f", stopped at +-{outcome.estimate.half_width:.3g} short of search.precision={precision:g}: the "
            "group's verdict is the same wherever lr_max lies in it")


def _optimum_text(record: JobRecord) -> str:
    """lr_opt in the job's line: a number with its interval, a bound, or why there is none."""
    status, (lo, hi) = record.lr_opt_status, record.lr_opt_bracket or [None, None]
    if status is None:
        return ""
    quality = f", {record.objective} {_fmt(record.quality_at_opt)}" if record.quality_at_opt is not None else ""
    if status == "bracketed":
        return f"; lr_opt={_fmt(record.lr_opt)} (95% {_fmt(lo)}..{_fmt(hi)}{quality})"
    if status in ("upper_bound", "lower_bound"):
        return f"; lr_opt {'<=' if status == 'upper_bound' else '>='} {_fmt(record.lr_opt)} (peak not bracketed)"
    return f"; lr_opt: none ({'quality flat in lr' if status == 'flat' else 'too few trained trials'})"


def _budget_text(budget: dict) -> str:
    return f"{budget['epochs']:g} epochs" if budget.get("epochs") is not None else f"{budget['steps']} steps"


def _fmt(x) -> str:
    return "none" if x is None else f"{x:.4g}"


def _say(line: str) -> None:
    """One line per job, also when quiet: where the result went is never noise."""
    tqdm.write(line)
