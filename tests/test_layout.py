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
    from spectral_sweep import curvature, records, theory

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
