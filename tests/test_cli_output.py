"""What a user reads: ``--help`` at 80 columns (whole option names, no ``<bool>`` on flags, one
way of stating defaults, ``--workers 0`` meaning the same in ``synth`` and ``extract``), and
the output of ``train`` and ``extract`` without warnings of libraries about their own code or
``file.py:line`` columns."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

import cli
from storegen import make_store
from videos import make_video

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "COLUMNS": "80"}


def commands() -> list[tuple[list[str], click.Command]]:
    group = typer.main.get_command(cli.app)
    out = []
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out += [([name, sub], c) for sub, c in cmd.commands.items()]
        else:
            out.append(([name], cmd))
    return out


@pytest.mark.parametrize("path,cmd", commands(), ids=lambda x: " ".join(x) if isinstance(x, list) else "")
def test_help_at_80_columns_shows_whole_option_names_and_one_default_style(path, cmd):
    res = CliRunner().invoke(cli.app, path + ["--help"], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    text = res.output
    for p in cmd.params:
        for opt in p.opts + p.secondary_opts:
            if opt.startswith("--"):
                assert opt in text, (opt, text)
    assert "…" not in text and "<bool>" not in text and "[default:" not in text, text


def test_workers_zero_means_in_this_process_for_synth_and_extract():
    for path in (["synth"], ["extract"]):
        res = CliRunner().invoke(cli.app, path + ["--help"], env={"COLUMNS": "80"})
        flat = " ".join(res.output.split())
        assert "-1: one per usable CPU core" in flat or "-1: one per usable core" in flat, flat
        assert "0 = in this process" in flat or "0 = decode in the main process" in flat, flat
    from synth.generate import SynthConfig

    assert SynthConfig().workers == -1
    with pytest.raises(ValueError, match="workers must be >= -1"):
        SynthConfig(workers=-2)


@pytest.mark.timeout(300)
def test_train_and_random_weight_extract_print_no_library_warnings(tmp_path):
    gen = make_store(tmp_path / "feats.h5", n_videos=12, seed=2)
    p = subprocess.run([sys.executable, str(REPO / "cli.py"), "train", "--store", str(gen.path),
                        "--out", str(tmp_path / "runs"), "--epochs", "1", "--device", "cpu",
                        "--set", "model.d_model=16", "--set", "model.n_layers=1"],
                       env=ENV, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    both = p.stdout + p.stderr
    assert "torch.jit.script" not in both and "Warning" not in both, both
    assert "loop.py" not in both, both                   # no file:line column on log lines
    make_video(tmp_path / "v" / "a.mp4", 1.0)
    p = subprocess.run([sys.executable, str(REPO / "cli.py"), "extract", "--videos",
                        str(tmp_path / "v"), "--out", str(tmp_path / "x.h5"), "-T", "2",
                        "--clip-weights", "random", "--vggish-weights", "random", "--image-size",
                        "64", "--workers", "0", "--device", "cpu", "--quiet"],
                       env=ENV, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    both = p.stdout + p.stderr
    assert "No pretrained weights loaded" not in both and "RANDOM WEIGHTS" in both, both


def test_extract_options_are_the_config_fields_and_set_reaches_any_of_them():
    """One source: every ExtractConfig field is an option (named and documented by the field);
    --set reaches the same fields and is checked like them."""
    import dataclasses

    from extract.config import ExtractConfig

    cmd = typer.main.get_command(cli.app).commands["extract"]
    names = {p.name for p in cmd.params}
    assert names == {f.name for f in dataclasses.fields(ExtractConfig)} | {"config", "set_", "quiet"}
    res = CliRunner().invoke(cli.app, ["extract", "--videos", ".", "--set", "T=0"])
    assert res.exit_code == 2 and "T must be >= 1" in res.output, res.output
    res = CliRunner().invoke(cli.app, ["extract", "--videos", ".", "--set", "no_such_field=1"])
    assert res.exit_code == 2 and "no_such_field" in res.output, res.output


def test_the_process_skips_teardown_but_keeps_status_output_and_library_exit_hooks(tmp_path):
    """cli.main's last exit hook ends the process without the interpreter's teardown: the exit
    status, everything printed, and what libraries' own exit hooks do (logging flushes its
    files) come out as with a full exit (SHMAMBA_FULL_EXIT=1)."""
    script = tmp_path / "probe.py"
    log, td = tmp_path / "probe.log", tmp_path / "teardown.txt"
    script.write_text(
        "import logging, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "import cli\n"
        "class Teardown:\n"
        f"    def __del__(self, write=open({str(td)!r}, 'w').write): write('torn down')\n"
        "KEPT = Teardown()   # deleted by the interpreter's teardown only\n"
        "@cli.app.command('probe')\n"
        "def probe(status: int = 0) -> None:\n"
        f"    handler = logging.FileHandler({str(log)!r})\n"
        "    handler.setLevel(logging.INFO)\n"
        "    logging.getLogger('probe').addHandler(handler)\n"
        "    logging.getLogger('probe').setLevel(logging.INFO)\n"
        "    logging.getLogger('probe').info('logged %d', status)\n"
        "    sys.stdout.write('x' * 100000)   # buffered: flushed on the way out\n"
        "    raise SystemExit(status)\n"
        "cli.main()\n")
    for full in ("0", "1"):
        for status in (0, 3):
            log.unlink(missing_ok=True)
            td.unlink(missing_ok=True)
            proc = subprocess.run([sys.executable, str(script), "probe", "--status", str(status)],
                                  env={**ENV, "SHMAMBA_FULL_EXIT": full}, capture_output=True,
                                  text=True, timeout=60)
            assert proc.returncode == status and proc.stdout == "x" * 100000, (full, status)
            assert log.read_text() == f"logged {status}\n"
            assert td.read_text() == ("torn down" if full == "1" else "")
    bad = subprocess.run([sys.executable, str(REPO / "cli.py"), "eval", "--run", str(tmp_path / "none")],
                         env=ENV, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "does not exist" in bad.stdout + bad.stderr
