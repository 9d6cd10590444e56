"""The house rules a newcomer relies on: short functions, and the public API the README shows."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "spectral_sweep"
MAX_FUNCTION_LINES = 60


def _functions():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}", node.end_lineno - node.lineno + 1


def test_no_function_is_longer_than_a_screen():
    long = [f"{where} ({n} lines)" for where, n in _functions() if n > MAX_FUNCTION_LINES]
    assert not long, "functions over 60 lines:\n" + "\n".join(long)


def test_the_public_api_imports_from_the_package():
    import spectral_sweep

    for name in spectral_sweep.__all__:
        assert callable(getattr(spectral_sweep, name)), name
    from spectral_sweep import find_max_lr, fit_power_law, hessian_extremes, lanczos, load_records, slq_density

    assert find_max_lr(lambda lr: lr < 0.3, 0.01, step=2.0, blowup=False).bracket[0] < 0.3
    from spectral_sweep import curvature, theory
    from spectral_sweep.point import store as records

    assert (load_records, fit_power_law) == (records.load_records, theory.fit_power_law)
    assert (lanczos, slq_density, hessian_extremes) == (curvature.lanczos, curvature.slq_density,
                                                         curvature.hessian_extremes)
    with pytest.raises(AttributeError):
        spectral_sweep.nothing_here  # noqa: B018


def test_the_readme_python_example_runs_as_written():
    """The README's example (the block after 'From Python') is executed verbatim."""
    readme = (PACKAGE.parent / "README.md").read_text()
    block = readme.split("From Python, as written:", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    exec(compile(block, "README.md", "exec"), {})


def test_the_readme_notebook_sweep_runs_as_written_and_matches_the_command_line(tmp_path, monkeypatch, capsys):
    """The README's sweep() example, verbatim, writes what the CLI writes and returns its tables."""
    import json

    readme = (PACKAGE.parent / "README.md").read_text()
    after = readme.split("A whole sweep from a notebook, as written:", 1)[1]
    block = after.split("```python", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(block, "README.md", "exec"), scope)
    found = scope["found"]
    assert list(found.lr_max["batch_size"]) == [16, 32] and len(found.scaling) == 1
    assert found.sweep_dir == Path("outputs/notebook") and (tmp_path / "outputs/notebook/report.md").exists()
    folders = sorted(p.parent.name for p in (tmp_path / "outputs/notebook").rglob("record.json"))
    # the same folder names as the command line gives these jobs
    from spectral_sweep import preflight

    plan = preflight.check_command(["model=vgg11_bn", "model.width=0.125", "dataset=synthetic",
                                    "dataset.train_size=256", "dataset.test_size=128", "optimizer=sgd",
                                    "batch=16,32", "name=notebook", "search=fixed", "train.steps=10"])
    assert folders == sorted(job.folder for job in plan.jobs)
    record = json.loads(next((tmp_path / "outputs/notebook").rglob("record.json")).read_text())
    assert record["model"] == "vgg11_bn-w0.125"
    assert record["variant"] == "dataset.test_size=128,dataset.train_size=256,search=fixed,train.steps=10"


def _module_imports():
    """{module: the package modules it imports}, at load time or inside a function alike."""
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        package = parts[:-1]
        name = ".".join(parts if parts[-1] != "__init__" else parts[:-1])
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = (package[: len(package) - node.level + 1] if node.level else []) + \
                    (node.module.split(".") if node.module else [])
                if base and base[0] == "spectral_sweep":
                    if node.module:   # `from . import x` loads x, not (again) the package itself
                        found.add(".".join(base))
                    found.update(".".join([*base, a.name]) for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("spectral_sweep"))
        graph[name] = found
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def test_the_package_has_no_import_cycle():
    graph = _module_imports()
    assert "spectral_sweep.cli" not in graph["spectral_sweep.config"]
    state = {}

    def visit(module, path):
        state[module] = "open"
        for dep in sorted(graph[module]):
            assert state.get(dep) != "open", "import cycle: " + " -> ".join([*path, dep])
            if dep not in state:
                visit(dep, [*path, dep])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


# The stages of a trial's path, lowest first: a module imports only its own stage or earlier ones.
STAGES = (
    ("spectral_sweep.errors", "spectral_sweep.seeds", "spectral_sweep.files", "spectral_sweep.theory"),
    ("spectral_sweep.config",),
    ("spectral_sweep.models",),
    ("spectral_sweep.data",),
    ("spectral_sweep.trial",),
    ("spectral_sweep.search",),
    ("spectral_sweep.curvature",),
    ("spectral_sweep.point",),
    ("spectral_sweep.report",),
    ("spectral_sweep.preflight", "spectral_sweep.api", "spectral_sweep.cli", "spectral_sweep.callbacks",
     "spectral_sweep"),
)
# the stages that take typed settings, not the whole job's Config
BELOW_THE_JOB = ("spectral_sweep.models", "spectral_sweep.data", "spectral_sweep.trial", "spectral_sweep.search",
                 "spectral_sweep.curvature")


def _stage(module: str) -> int:
    for i, prefixes in enumerate(STAGES):
        if any(module == p or (p != "spectral_sweep" and module.startswith(p + ".")) for p in prefixes):
            return i
    raise AssertionError(f"{module} belongs to no stage: add it to STAGES in tests/test_layout.py")


def test_every_module_has_a_stage_and_no_stage_imports_a_later_one():
    graph = _module_imports()
    # `from spectral_sweep import seeds` names the package, whose __init__ only points at modules lazily
    upward = [f"{m} -> {d}" for m, deps in graph.items() for d in deps - {"spectral_sweep"} if _stage(d) > _stage(m)]
    assert not upward, "imports that run up a stage:\n" + "\n".join(sorted(upward))


def test_the_stages_below_the_job_never_see_the_whole_config():
    """``point/run.py`` turns the Config into each stage's settings; below it, only group schemas."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        if not module.startswith(BELOW_THE_JOB):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("spectral_sweep.config") \
                    and any(a.name == "Config" for a in node.names):
                offenders.append(module)
    assert not offenders, f"these import Config; give them their own settings instead: {offenders}"


def test_folders_mirror_the_config_groups_and_no_two_siblings_share_a_name():
    """A code folder per stage, and config/ holds one schema module per group of conf/."""
    groups = {p.name for p in (PACKAGE.parent / "conf").iterdir() if p.is_dir()} - {"experiment"}
    schemas = {p.stem for p in (PACKAGE / "config").glob("*.py")}
    assert groups <= schemas, f"config groups without a schema module: {sorted(groups - schemas)}"
    for folder in [PACKAGE, *[p for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()]]:
        names = [p.stem for p in folder.glob("*.py")] + [p.name for p in folder.iterdir() if p.is_dir()]
        assert len(names) == len(set(names)), f"{folder}: a module and a folder share a name"
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert len(top) <= 10, f"the package's top holds {len(top)} modules: {top}; give them a stage folder"
