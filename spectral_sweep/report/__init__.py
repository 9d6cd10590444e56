"""The report: tables (CSV + Markdown) and figures (PNG) that test the scaling laws, from a sweep's records.

``write_report(sweep_dirs)`` reads every ``record.json`` under the given directories and writes:

lr_max.csv / .md        one row per (model, dataset, optimizer, B): lr_max (the edge of training),
                        its bracket, status and accuracy; lr_blowup (the edge of divergence) and
                        its bracket; whether the trials were monotone; lr_best, best accuracy, cost
scaling.csv / .md       one row per (model, dataset, optimizer): fitted exponent with its 95%
                        interval, the expected exponent and the verdict (consistent, inconsistent
                        or inconclusive, with what would decide it), saturation, the fit on all
                        points and the blow-up edge's exponent for comparison
spectrum.csv / .md      (when records carry a ``spectrum``) lambda_max(B), lr_pred(B) (the
saturation.csv          optimizer's stability limit: momentum, Nesterov, Adam) against the measured
                        lr_max(B); lambda_full, kappa, B* = kappa / lambda_full, B_noise and the
                        measured saturation side by side
lr_max_vs_batch.png     lr_max against B per group, log-log, with fit and reference slopes 1, 1/2
normalised_lr.png       lr_max / B^expected against B: flat where the law holds
accuracy_vs_lr_<g>.png  test accuracy against lr, one curve per B, diverged trials marked
lambda_max_vs_batch_<g>.png, density_<g>.png   the spectrum, when measured
learner.csv / .md       (when the sweep ran optimizer=lanczos_sgd) the learner's trial against the
learner_<point>.png     best fixed-lr trial of the matching search: accuracy, loss, cost
sharpness/<point>.png   (for each job whose trials tracked sharpness, sharpness.every) lambda_max
                        against step per trial, with the stability limit of the lr in use
report.md               an index: provenance, every table inline, every figure linked, and the
                        record files that were skipped as corrupt

``<g>`` names a group (model_dataset_optimizer), ``<point>`` a job (model_dataset_optimizer_B_seed).

Modules: ``tables`` (DataFrames), ``comparison`` (the learner against the search, a DataFrame),
``markdown`` (all text), ``figures`` (all images), ``write`` (this orchestration). The console
script ``spectral-sweep-report SWEEP_DIR... [--out DIR] [--quiet]`` calls ``main``.
"""

from .write import main, write_report

__all__ = ["main", "write_report"]
