"""What extraction's start-up loads (docs/EXTRACTION.md): ``import cli``, which every spawned decode
worker re-runs, stays free of numpy, h5py, torch and the store; a decode worker loads no h5py,
store or torch."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def run_python(code: str, *args: str, env: dict | None = None) -> str:
    out = subprocess.run([sys.executable, *(args or ["-c", code])], cwd=REPO, env=env or ENV,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip()


def test_import_cli_loads_no_numpy_h5py_torch_or_store():
    code = ("import sys, cli\n"
            "print(sorted(m for m in ('numpy', 'h5py', 'torch', 'open_clip', 'store', 'qa') "
            "if m in sys.modules))")
    assert run_python(code) == "[]"


def test_a_decode_worker_spawned_under_cli_loads_no_h5py_store_or_torch(tmp_path):
    """A real spawned worker: the main script imports cli, so the worker re-runs it first."""
    script = tmp_path / "main.py"
    script.write_text(textwrap.dedent("""\
        import sys
        import cli  # noqa: F401  (re-run by the spawned worker, as `python cli.py extract` is)

        def loaded():
            heavy = ("h5py", "store", "qa", "torch", "open_clip")
            return sorted(m for m in heavy if m in sys.modules)

        if __name__ == "__main__":
            from extract.ahead import _new_pool
            from extract.decode_worker import single_threaded_env, warm_up
            pool = _new_pool(1)
            with single_threaded_env():
                pool.submit(warm_up).result()             # the decode modules, as a task loads them
                print(pool.submit(loaded).result())
            pool.shutdown()
        """))
    assert run_python("", str(script)) == "[]"
