"""Every command shown in README.md exists, uses only real options, and is run for real somewhere.

* Commands are read from the README's ```bash blocks (every line, joined at a trailing ``\\``)
  and from inline `python cli.py ...` spans in the prose.
* ``python cli.py ...`` / ``torchrun ... cli.py ...``: the (sub)command exists in the typer app,
  every option used is one of its parameters *and* appears in its ``--help`` output, and (for
  code-block lines) the whole line parses with click, required options and value types included.
* ``make ...``: ``make -n -B`` with the same targets and variables succeeds and installs nothing
  without a requirement; ``pip install -e '.[extra]'``: the extra exists; ``pytest FILE``: the
  file exists; ``torchrun`` options appear in ``torchrun --help``.
* :data:`COVERAGE` maps each README command to where it runs for real: a test (checked to
  exist), the ``demo`` target of the Makefile (checked to contain that subcommand with those
  options) or, for the CUDA-only install line, ``manual:``.  Every README command must be
  covered, option by option, and every entry must still match a README command.
* The parameter table equals ``python cli.py model --all --markdown``; every README model
  command runs; every dataset and attribute of store/schema.py is named in the README; every
  test named in README.md and docs/GUARANTEES.md exists.
"""
from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import typer.main
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GUARANTEES = ROOT / "docs" / "GUARANTEES.md"
sys.path.insert(0, str(ROOT))

import cli  # noqa: E402

ENV = {"COLUMNS": "1000", "TERMINAL_WIDTH": "1000"}

# README command (head words + the options/variables it covers) -> where it runs for real.
#   "tests/FILE.py::test_name"  that test (CLI = through cli.app or a cli.py process; API = the
#                               function the command calls, with the same config fields)
#   "make demo"                 a line of the Makefile's demo target runs it with these options
#   "Makefile:TARGET"           a make target (make test runs in CI through .ci/run)
#   "manual: why"               not automated (CUDA machine only)
COVERAGE: dict[str, list[str]] = {
    # --- the two commands and set-up
    "make demo": ["Makefile:demo"],
    "make test": ["Makefile:test"],                         # .ci/run
    "make setup": ["Makefile:setup"],                       # prerequisite of make test / demo
    "make setup TORCH_PINS=": ["Makefile:setup", "tests/test_readme.py::test_make_lines_dry_run"],
    "pip install --no-build-isolation -e": [
        "manual: CUDA machine only; tests/gpu/test_gpu_model.py then checks mamba-ssm vs mambapy"],
    # --- extraction
    "python cli.py extract --videos --annotations --out": [
        "make demo",
        "tests/test_hostile_inputs.py::test_every_file_has_its_outcome_and_the_run_goes_on",  # API
        "tests/test_hostile_inputs.py::test_malformed_json_names_file_and_record_index"],     # CLI
    "python cli.py extract --videos --out": [
        "tests/test_extract.py::test_cli_exit_status_with_and_without_strict"],               # CLI
    "python cli.py extract --annotations --out --questions-only": [
        "tests/test_extract.py::test_questions_only_adds_questions_without_decoding"],        # API
    "python cli.py extract --clip-weights --vggish-weights": [
        "tests/test_extract.py::test_weight_files_give_the_features_of_the_seeded_random_weights",
        "tests/test_extract.py::test_cli_exit_status_with_and_without_strict"],               # CLI
    "SHMAMBA_OFFLINE= python cli.py extract": [
        "tests/test_encoders.py::test_default_weights_fail_fast_without_network_or_cache",
        "tests/test_encoders.py::test_clip_tag_found_in_open_clip_url_cache"],
    "python cli.py extract --scheduler": [
        "tests/test_extract_dask.py::test_local_cluster_gives_the_in_process_store"],         # API
    # --- training and evaluation
    "python cli.py train --store": ["make demo", "tests/test_eval.py::test_cli_train_then_eval"],
    "python cli.py train --config": [
        "make demo", "tests/test_train.py::test_config_file_then_overrides_and_resume_rules"],
    "python cli.py train --variant": [   # API: its 'runs' fixture trains variant="euclidean"
        "tests/test_checkpoint_safety.py::"
        "test_resume_with_a_checkpoint_of_another_variant_or_dims_fails_clearly"],
    "python cli.py train --set": [
        "tests/test_eval.py::test_cli_train_then_eval",                                       # CLI
        "tests/test_hostile_inputs.py::test_train_refuses_a_store_that_fails_the_quick_check"],
    "python cli.py train --resume": [
        "tests/test_train_resume.py::test_resume_in_new_processes_through_the_cli",           # CLI
        "tests/test_soak.py::test_training_killed_between_and_within_epochs_resumes_to_identical_metrics"],
    "torchrun cli.py train --standalone --nproc-per-node --store --batch-size": [
        "tests/test_ddp.py::test_two_gloo_processes_match_one_process"],                      # CLI
    "python cli.py eval --split": ["make demo", "tests/test_eval.py::test_cli_train_then_eval"],
    "python cli.py ablate --store --variants --seeds --epochs --out": [
        "tests/test_ablate.py::test_a_killed_ablation_continues_without_redoing_finished_runs"],  # CLI
    "python cli.py ablate --store --variants --config --set": [
        "tests/test_ablate.py::test_a_killed_ablation_continues_without_redoing_finished_runs"],
    "python cli.py ablate --store --config --seeds --out": [
        "tests/test_ablate.py::test_a_killed_ablation_continues_without_redoing_finished_runs",
        "Makefile:ablation"],
    "make ablation": ["Makefile:ablation"],
    "python cli.py score --annotations --predictions": [
        "tests/test_scoring.py::test_cli_round_trip"],                                        # CLI
    "python cli.py score --json-out": ["tests/test_scoring.py::test_cli_round_trip"],
    "python cli.py score --split --train-annotations": ["tests/test_scoring.py::test_cli_round_trip"],
    # --- store, model, synth
    "python cli.py store info": ["tests/test_store.py::test_store_info_json_and_table"],
    "python cli.py store info --json": ["tests/test_store.py::test_store_info_json_and_table"],
    "python cli.py store reindex": [
        "tests/test_store_integrity.py::test_store_reindex_command_rebuilds_the_entry_file"],
    "python cli.py store verify": [
        "tests/test_store_integrity.py::test_truncated_shard_is_named",
        "tests/test_extract_resume.py::test_killed_run_resumes_to_the_uninterrupted_store"],
    "python cli.py model --all --markdown": [
        "tests/test_readme.py::test_readme_model_commands_run_and_the_table_is_current"],
    "python cli.py model --variant --visual-dim --text-dim --options": [
        "tests/test_readme.py::test_readme_model_commands_run_and_the_table_is_current"],
    "python cli.py synth": ["make demo", "tests/test_synth.py::test_rerun_reuses_and_cli_matches_api"],
    # --- import, ask, AVQA synth (issue #15)
    "python cli.py import-features --audio --visual --annotations --out": [
        "tests/test_import_features.py::test_cli_import_and_errors"],                        # CLI
    "python cli.py import-features --visual-name": [
        "tests/test_import_features.py::test_cli_import_and_errors"],
    "python cli.py ask --run --top": ["tests/test_avqa_ask.py::test_ask_cli_json_and_refusals"],
    "python cli.py ask --options --json": ["tests/test_avqa_ask.py::test_ask_cli_json_and_refusals"],
    "python cli.py ask --question --type --checkpoint": [
        "tests/test_avqa_ask.py::test_ask_cli_json_and_refusals"],
    "python cli.py synth --out --config": [                                                   # API
        "tests/test_avqa_ask.py::test_synth_writes_the_official_avqa_record_format"],
    "python cli.py extract --videos --annotations --out --config": [
        "make demo", "tests/test_avqa_ask.py::test_avqa_end_to_end_beats_chance_by_20_points"],
    "python cli.py train --store --config --out --name": [
        "make demo", "tests/test_avqa_ask.py::test_avqa_end_to_end_beats_chance_by_20_points"],
    "python cli.py eval --run --split": [
        "make demo", "tests/test_avqa_ask.py::test_avqa_end_to_end_beats_chance_by_20_points"],
    # --- running tests
    "pytest -q": ["Makefile:test"],                         # python -m pytest
}
MANUAL_ALLOWED = {"pip install --no-build-isolation -e"}


# ---- reading the README --------------------------------------------------------------------

def code_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(language, lines) of every fenced block."""
    blocks, lang, lines = [], None, []
    for line in text.splitlines():
        m = re.match(r"^```\s*(\S*)\s*$", line)
        if m and lang is None:
            lang, lines = m.group(1), []
        elif line.startswith("```") and lang is not None:
            blocks.append((lang, lines))
            lang = None
        elif lang is not None:
            lines.append(line)
    assert lang is None, "README.md: a fenced code block is not closed"
    return blocks


def shell_lines(lines: list[str]) -> list[str]:
    """Command lines of a bash block: continuation lines joined, comments and blanks dropped."""
    out, cur = [], ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        words = shlex.split(cur, comments=True)
        if words:
            out.append(cur.strip())
        cur = ""
    return out


def readme_commands() -> list[tuple[str, bool]]:
    """(command line, from a code block?) for every command shown in the README."""
    text = README.read_text(encoding="utf-8")
    found = []
    for lang, lines in code_blocks(text):
        if lang == "bash":
            found += [(c, True) for c in shell_lines(lines)]
        else:  # commands must live in bash blocks, where this test sees them
            for line in lines:
                assert not re.match(r"\s*(python|torchrun|make|\.venv/)", line), \
                    f"README.md: command outside a ```bash block: {line!r}"
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for span in re.findall(r"`([^`\n]*cli\.py[^`\n]*)`", prose):
        found.append((span, False))
    return found


ENV_ASSIGN = re.compile(r"^[A-Z_][A-Z0-9_]*=")


class Parsed:
    """A command line split into its head words, the options/variables it uses and the rest."""

    def __init__(self, line: str):
        words = shlex.split(line, comments=True)
        self.line = line
        self.env = [w.split("=", 1)[0] + "=" for w in words if ENV_ASSIGN.match(w)]
        while words and ENV_ASSIGN.match(words[0]):
            words.pop(0)
        prog = Path(words[0]).name
        self.kind, self.head, self.opts, self.args = "", [], [], []
        self.tool_opts: list[str] = []      # torchrun's own options
        if prog in ("python", "python3") and "cli.py" in [Path(w).name for w in words[1:2]]:
            self.kind, self.args = "cli", words[2:]
        elif prog == "torchrun":
            at = next(i for i, w in enumerate(words) if Path(w).name == "cli.py")
            self.kind, self.args = "cli", words[at + 1:]
            self.tool_opts = [w.split("=", 1)[0] for w in words[1:at] if w.startswith("-")]
            self.head = ["torchrun"]
        elif prog in ("python", "python3") and words[1:3] == ["-m", "pytest"]:
            self.kind, self.head = "pytest", ["pytest"]
            self.opts = [w for w in words[3:] if w.startswith("-")]
            self.args = [w for w in words[3:] if not w.startswith("-")]
        elif prog == "make":
            self.kind, self.head = "make", ["make"] + [w for w in words[1:] if "=" not in w
                                                       and not w.startswith("-")]
            self.opts = [w.split("=", 1)[0] + "=" for w in words[1:] if "=" in w]
            self.args = words[1:]
        elif prog == "pip":
            self.kind, self.head = "pip", ["pip", words[1]]
            self.opts = [w for w in words[2:] if w.startswith("-")]
            self.args = [w for w in words[2:] if not w.startswith("-")]
        else:
            raise AssertionError(f"README.md: unknown program {words[0]!r} in {line!r}; "
                                 "teach tests/test_readme.py how to check it")
        if self.kind == "cli":
            self.command_path, self.command = resolve_cli(self.args, line)
            self.head = (self.head or ["python"]) + ["cli.py"] + self.command_path
            rest = self.args[len(self.command_path):]
            self.opts = [w.split("=", 1)[0] for w in rest if w.startswith("-")]

    def signature(self) -> tuple[str, set[str]]:
        return " ".join(self.head), set(self.env) | set(self.opts) | set(self.tool_opts)


def resolve_cli(args: list[str], line: str):
    """(command path, click command) of ``cli.py ARGS``."""
    cmd = typer.main.get_command(cli.app)
    path = []
    for word in args:
        commands = getattr(cmd, "commands", None)
        if commands is None or word.startswith("-"):
            break
        assert word in commands, f"README.md: {line!r}: no command {' '.join(path + [word])!r}"
        cmd = commands[word]
        path.append(word)
    assert path and not hasattr(cmd, "commands"), f"README.md: {line!r} names no command"
    return path, cmd


def parse_key(key: str) -> tuple[str, set[str]]:
    words = key.split()
    opts = {w for w in words if w.startswith("-") or w.endswith("=")}
    return " ".join(w for w in words if w not in opts), opts


COMMANDS = readme_commands()
PARSED = [Parsed(line) for line, _ in COMMANDS]


# ---- the checks ----------------------------------------------------------------------------

def test_the_readme_shows_the_product_card_commands():
    lines = {line for line, block in COMMANDS if block}
    for want in ("make demo", "make test",
                 "python cli.py extract --videos ./raw --annotations ./annotations --out feats.h5",
                 "python cli.py train --store feats.h5", "python cli.py eval --split test"):
        assert any(line.startswith(want) for line in lines), want


CLI_INDEX = [i for i, p in enumerate(PARSED) if p.kind == "cli"]


@pytest.mark.parametrize("index", CLI_INDEX, ids=[
    shlex.join(shlex.split(COMMANDS[i][0], comments=True))[:70] for i in CLI_INDEX])
def test_cli_commands_and_options_exist(index):
    line, in_block = COMMANDS[index]
    p = PARSED[index]
    params = {o for prm in p.command.params for o in list(prm.opts) + list(prm.secondary_opts)}
    res = CliRunner().invoke(cli.app, p.command_path + ["--help"], env=ENV)
    assert res.exit_code == 0, res.output
    for opt in p.opts:
        assert opt in params, \
            f"README.md: {line!r}: {' '.join(p.command_path)} has no option {opt}"
        assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", res.output), \
            f"README.md: {line!r}: {opt} is not in the --help of {' '.join(p.command_path)}"
    if in_block:   # the whole line parses: no unknown option, values of the right type
        rest = p.args[len(p.command_path):]
        ctx = p.command.make_context(p.command_path[-1], list(rest))
        ctx.close()


def test_make_lines_dry_run():
    for p in PARSED:
        if p.kind != "make":
            continue
        env = {k: v for k, v in os.environ.items()   # `make test` runs this: drop its flags
               if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
        run = subprocess.run(["make", "-n", "-B"] + p.args, cwd=ROOT, capture_output=True,
                             text=True, timeout=60, env=env)
        assert run.returncode == 0, f"README.md: {p.line!r}: make -n failed: {run.stderr}"
        for out in run.stdout.splitlines():
            if "pip install" in out:
                words = shlex.split(out.split("pip install", 1)[1])
                assert [w for w in words if not w.startswith("-")], \
                    f"README.md: {p.line!r} runs {out!r}, which names nothing to install"


def test_pip_pytest_and_torchrun_lines():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    torchrun_help = None
    for p in PARSED:
        if p.kind == "pip":
            assert p.head == ["pip", "install"] and "-e" in p.opts, p.line
            for arg in p.args:
                m = re.fullmatch(r"\.\[([\w,-]+)\]", arg)
                assert m, f"README.md: {p.line!r}: install the project as '.[extra]'"
                for extra in m.group(1).split(","):
                    assert extra in extras, \
                        f"README.md: {p.line!r}: pyproject.toml has no extra {extra!r}"
        elif p.kind == "pytest":
            assert p.args, p.line
            for arg in p.args:
                assert (ROOT / arg.split("::")[0]).exists(), f"README.md: {p.line!r}: no {arg}"
        elif p.tool_opts:
            if torchrun_help is None:
                torchrun_help = subprocess.run(
                    [sys.executable, "-m", "torch.distributed.run", "--help"], capture_output=True,
                    text=True, timeout=120,
                    env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}).stdout
            for opt in p.tool_opts:
                assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", torchrun_help), \
                    f"README.md: {p.line!r}: torchrun has no option {opt}"


def test_every_readme_command_is_covered_option_by_option():
    keys = {key: parse_key(key) for key in COVERAGE}
    used = set()
    for p in PARSED:
        head, opts = p.signature()
        matching = [k for k, (kh, ko) in keys.items() if kh == head and ko <= opts]
        assert matching, f"README.md: {p.line!r} is not in COVERAGE (head {head!r})"
        covered = set().union(*(keys[k][1] for k in matching))
        assert opts <= covered, \
            f"README.md: {p.line!r}: no COVERAGE entry for {sorted(opts - covered)}"
        used.update(matching)
    stale = sorted(set(COVERAGE) - used)
    assert not stale, f"COVERAGE entries that match no README command: {stale}"


# ---- the references of COVERAGE are true -----------------------------------------------------

def makefile_recipe(target: str) -> list[str]:
    """The recipe lines of ``target`` (continuations joined); [] when there is no such target."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    recipe, inside, cur = [], False, ""
    for line in lines:
        if re.match(rf"^{re.escape(target)}\s*:", line):
            inside = True
            continue
        if inside:
            if not line.startswith("\t"):
                if recipe or not line.strip():
                    break
                continue
            cur += line.strip()
            if cur.endswith("\\"):
                cur = cur[:-1] + " "
                continue
            recipe.append(cur)
            cur = ""
    return recipe


def defined_tests() -> dict[str, set[str]]:
    out = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        out[path.relative_to(ROOT).as_posix()] = {
            n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return out


def test_coverage_references_are_true():
    funcs = defined_tests()
    demo = makefile_recipe("demo")
    assert demo, "Makefile: no demo target"
    for key, refs in COVERAGE.items():
        head, opts = parse_key(key)
        assert refs, key
        for ref in refs:
            if ref.startswith("manual:"):
                assert key in MANUAL_ALLOWED, \
                    f"COVERAGE[{key!r}]: only {MANUAL_ALLOWED} may be manual"
            elif ref.startswith("Makefile:"):
                target = ref.split(":", 1)[1]
                makefile = (ROOT / "Makefile").read_text()
                assert re.search(rf"^{re.escape(target)}\s*:", makefile, flags=re.M), \
                    f"COVERAGE[{key!r}]: the Makefile has no target {target}"
            elif ref == "make demo":
                assert head.startswith("python cli.py "), key
                sub = head[len("python "):]
                lines = [l for l in demo if re.search(rf"(^|\s){re.escape(sub)}(\s|$)", l)]
                assert lines, f"COVERAGE[{key!r}]: the demo target runs no {sub!r}"
                assert any(opts <= set(shlex.split(l)) for l in lines), \
                    f"COVERAGE[{key!r}]: the demo target does not run {sub!r} with {sorted(opts)}"
            else:
                file, _, name = ref.partition("::")
                assert file in funcs, f"COVERAGE[{key!r}]: no test file {file}"
                assert name in funcs[file], f"COVERAGE[{key!r}]: {file} has no {name}"


def test_tests_named_in_the_readme_and_guarantees_exist():
    funcs = defined_tests()
    names = set().union(*funcs.values())
    files = {Path(f).name for f in funcs} | set(funcs)
    for doc in (README, GUARANTEES):
        text = doc.read_text(encoding="utf-8")
        for f in set(re.findall(r"(?:tests/)?(?:gpu/)?test_\w+\.py", text)):
            assert f in files, f"{doc.name}: names {f}, which does not exist"
        for name in set(re.findall(r"(?<![\w/])(test_\w+)(?![\w.])", text)):
            if name.endswith("_"):   # written shortened, e.g. test_duplicate_* or test_x_…
                assert any(n.startswith(name) for n in names), f"{doc.name}: no test {name}*"
            else:
                assert name in names, f"{doc.name}: names {name}, which does not exist"


# ---- the README's facts are current ---------------------------------------------------------

def test_readme_model_commands_run_and_the_table_is_current():
    torch.set_num_threads(1)
    text = README.read_text(encoding="utf-8")
    runner = CliRunner()
    ran = 0
    for (line, in_block), p in zip(COMMANDS, PARSED):
        if not in_block or p.kind != "cli" or p.command_path != ["model"]:
            continue
        res = runner.invoke(cli.app, p.args, env=ENV)
        assert res.exit_code == 0, f"{line}: {res.output}"
        ran += 1
        if "--markdown" in p.opts and "--all" in p.opts:
            got = [l for l in res.output.splitlines()
                   if l.startswith("|") and not l.startswith("| Mamba backend")]
            start = text.index("| component |")
            block = text[start:].split("\n\n", 1)[0].splitlines()
            assert block == got, "README.md: the parameter table differs from " \
                f"`{line}`; paste the new one:\n" + "\n".join(got)
    assert ran >= 2


def test_readme_names_every_store_field_and_attribute():
    from store.schema import FAILURE_FIELDS, QUESTION_FIELDS, STORE_ATTRS, VIDEO_FIELDS

    text = README.read_text(encoding="utf-8")
    for f in VIDEO_FIELDS + QUESTION_FIELDS + FAILURE_FIELDS:
        assert f"`{f.path}`" in text, f"README.md: the store table lacks {f.path}"
    for attr in STORE_ATTRS:
        assert f"`{attr}`" in text, f"README.md: the store attributes lack {attr}"


def test_readme_names_every_variant():
    from model import VARIANTS

    text = README.read_text(encoding="utf-8")
    for name in VARIANTS:
        assert re.search(rf"^\| `{re.escape(name)}` \|", text, flags=re.M), \
            f"README.md: the variants table lacks {name}"


def all_cli_options() -> set[str]:
    found: set[str] = set()

    def walk(cmd) -> None:
        for prm in cmd.params:
            found.update(o for o in list(prm.opts) + list(prm.secondary_opts) if o.startswith("--"))
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(cli.app))
    return found


def test_every_option_named_in_the_docs_exists():
    """Options named in the prose (`--keep-unknown`, `--sampling uniform`, ...) are real too."""
    external = {"--help",                                # every command
                "--no-build-isolation",                  # pip
                "--standalone", "--nproc-per-node"}     # torchrun
    known = all_cli_options() | external
    for doc in (README, GUARANTEES):
        text = doc.read_text(encoding="utf-8")
        for opt in sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text))):
            assert opt in known, f"{doc.name}: names the option {opt}, which no command has"


def test_readme_links_point_at_existing_sections_and_files():
    text = README.read_text(encoding="utf-8")
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
             for h in re.findall(r"^#+ (.+)$", prose, flags=re.M)}
    for target in re.findall(r"\]\(([^)]+)\)", prose):
        if target.startswith("#"):
            assert target[1:] in slugs, f"README.md: no section for the link {target}"
        else:
            assert (ROOT / target).exists(), f"README.md: links to {target}, which does not exist"
