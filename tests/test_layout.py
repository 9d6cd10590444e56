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
