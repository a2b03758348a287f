"""What extraction's start-up loads (docs/EXTRACTION.md): ``import cli``, which every spawned decode
worker re-runs, stays free of numpy, h5py, torch and the store; a decode worker loads no h5py,
store or torch; open_clip is imported without transformers for a CLIP model that does not use it."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from extract.clip_models import import_refused, model_config, needs_timm, needs_transformers

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


def test_which_clip_models_need_transformers():
    assert model_config("ViT-B/32")["vision_cfg"]["image_size"] == 224
    assert not needs_transformers("ViT-B-32")
    assert needs_transformers("roberta-ViT-B-32")             # Hugging Face text tower
    assert needs_transformers("ViT-B-16-SigLIP")              # Hugging Face tokenizer
    assert needs_transformers("hf-hub:org/model")             # no config here: may need it
    assert model_config("no-such-model") is None
    assert not needs_timm("ViT-B-32") and needs_timm("EVA02-B-16") and needs_timm("hf-hub:org/m")


def test_import_refused_blocks_the_module_and_restores_sys_modules():
    name = "shmamba_refused_probe"
    with import_refused(name):
        with pytest.raises(ImportError):
            __import__(name)
    assert name not in sys.modules
    with pytest.raises(ValueError, match="imported already"):
        with import_refused("json"):
            pass


@pytest.mark.timeout(60)
def test_the_clip_encoder_is_built_without_importing_transformers_or_timm(tmp_path):
    """A fake ``transformers`` on the path records its import; extraction's CLIP build (weights
    resolved, then the model) must not import it, and a later ``import transformers`` finds it."""
    fake = tmp_path / "site" / "transformers"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("import os\n"
                                      "open(os.environ['FAKE_MARKER'], 'a').write('imported')\n")
    marker = tmp_path / "marker"
    code = textwrap.dedent("""\
        import os, sys
        from extract.config import ExtractConfig
        from extract.encoders import build_encoders

        cfg = ExtractConfig(T=2, clip_weights="random:0", text_len=8, image_size=64, device="cpu")
        build_encoders(cfg, audio=False)
        print("transformers" in sys.modules, os.path.exists(os.environ["FAKE_MARKER"]),
              "timm" in sys.modules)
        import transformers  # noqa: F401
        import timm  # noqa: F401  (refused only while open_clip was imported)
        print(os.path.exists(os.environ["FAKE_MARKER"]))
        """)
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(REPO)]),
           "FAKE_MARKER": str(marker), "OMP_NUM_THREADS": "2"}
    assert run_python(code, env=env).splitlines() == ["False False False", "True"]
