"""``_target_``: a model, dataset or optimizer named by the dotted path of a callable.

The built-in presets name the package's own constructors (``spectral_sweep.models.vgg.vgg16``);
a user's presets, through ``--config-dir``, name theirs (``mynet.SmallNet``). ``locate`` imports
the callable and ``call`` hands it the config's options; a path that does not import, is not
callable or rejects its arguments is one ``UsageError`` line naming the key to fix, never a
traceback from deep inside a constructor. Pure Python until a target is imported.
"""

from __future__ import annotations

import importlib
import inspect

from spectral_sweep.errors import UsageError


def locate(path: str, key: str):
    """The object at dotted ``path`` (``package.module.attribute``), or one line saying why not."""
    if not isinstance(path, str) or not path.strip():
        raise UsageError(f"{key} must name a callable as package.module.name, got {path!r}")
    module_name, _, attribute = path.rpartition(".")
    if not module_name:
        raise UsageError(f"{key}={path} must be a dotted path (package.module.name) to a callable")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except ModuleNotFoundError as e:
        raise UsageError(f"{key}={path} does not import ({e}); is its folder on PYTHONPATH?") from None
    except AttributeError:
        raise UsageError(f"{key}={path}: module {module_name} has no {attribute}") from None
    except Exception as e:   # the user's module itself fails on import
        raise UsageError(f"{key}={path}: importing {module_name} failed with {type(e).__name__}: {e}") from None
    if not callable(target):
        raise UsageError(f"{key}={path} is not callable (a {type(target).__name__})")
    return target


def accepts(target, name: str) -> bool:
    """Whether ``target`` takes keyword ``name`` (or any keyword, through ``**kwargs``)."""
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):   # a builtin without a signature: assume it does
        return True
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in parameters)


def call(target, key: str, path: str, *args, **kwargs):
    """``target(*args, **kwargs)``; arguments it does not take, and a failure while it builds,
    are one line naming ``key``."""
    try:
        inspect.signature(target).bind(*args, **kwargs)
    except TypeError as e:
        raise UsageError(f"{key}={path} rejects its arguments ({e}); "
                         f"given: {', '.join(sorted(kwargs)) or 'none'}") from None
    except ValueError:   # no signature to check against
        pass
    try:
        return target(*args, **kwargs)
    except UsageError:
        raise
    except Exception as e:
        raise UsageError(f"{key}={path} failed to build: {type(e).__name__}: {e}") from None
