"""geoopt's stereographic (Poincare ball) math without TorchScript.

geoopt decorates its math functions (``geoopt.manifolds.stereographic.math`` and the helpers
``sign`` / ``sabs`` / ``clamp_abs`` of ``geoopt.utils``) with ``torch.jit.script``.  A scripted
function carries process-wide executor state: after a few calls with graph optimisation on, the
profiling executor switches to an optimised graph whose symbolically derived gradients differ
from autograd's in the last bits, and that graph is then used for good, even inside
``torch.jit.optimized_execution(False)`` (the flag only picks the plan while none is optimised
yet, and it is per thread).  So what a training step computes would depend on what the process
ran before (earlier tests, an earlier evaluation, another thread): an in-process run and a run
resumed in a fresh process would differ.

This module executes geoopt's own source once more with ``torch.jit.script`` turned into the
identity, into private module objects (``sys.modules`` keeps geoopt's scripted modules), so the
functions are geoopt's code run eagerly: ordinary autograd, the same numbers in every process
and thread, whatever ran before.  ``pmath`` is the eager counterpart of
``geoopt.manifolds.stereographic.math`` (same names and signatures).
"""
from __future__ import annotations

import importlib.util
import sys
import threading
from types import ModuleType

import torch
import torch.jit._state as _jit_state

_LOCK = threading.Lock()


def _exec_eager(name: str, replace: dict[str, ModuleType]) -> ModuleType:
    """A fresh copy of module ``name`` executed with TorchScript scripting disabled; while it
    runs, ``replace`` (module name -> module) stands in for those modules in its imports."""
    import geoopt  # noqa: F401  (the package and its scripted modules are imported first)

    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot find module {name}")
    module = importlib.util.module_from_spec(spec)
    saved = {k: sys.modules.get(k) for k in replace}
    was_enabled = bool(_jit_state._enabled)
    with _LOCK:
        sys.modules.update(replace)
        _jit_state.disable()
        try:
            spec.loader.exec_module(module)
        finally:
            if was_enabled:
                _jit_state.enable()
            for k, m in saved.items():
                if m is None:
                    sys.modules.pop(k, None)
                else:
                    sys.modules[k] = m
    return module


def _build() -> ModuleType:
    utils = _exec_eager("geoopt.utils", {})
    math = _exec_eager("geoopt.manifolds.stereographic.math", {"geoopt.utils": utils})
    scripted = [n for n, f in vars(math).items() if isinstance(f, torch.jit.ScriptFunction)]
    if scripted:  # a geoopt that scripts some other way: fail loudly rather than drift silently
        raise ImportError(f"eager geoopt math still has TorchScript functions: {scripted}")
    return math


#: eager ``geoopt.manifolds.stereographic.math``
pmath = _build()

__all__ = ["pmath"]
