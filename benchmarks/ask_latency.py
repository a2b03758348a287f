"""``ask`` latency on one 60-s video: the cold command, and with the models loaded once.

    python benchmarks/ask_latency.py [--device auto] [--repeats 10] [--cold-runs 2] [--workdir DIR]
        [--json OUT] [--run DIR --video FILE] [--question Q ...] [--options "a|b|c|d"]
        [--videos 4] [--seconds 60] [--size 640x360] [--fps 25] [--T 60] [--clip-model ViT-B-32]

1. Build (skipped when ``--run`` and ``--video`` are given, or when ``--workdir`` already holds
   a trained run), each step the command a user types, as a subprocess, its output in
   ``WORKDIR/build.log``: ``python cli.py synth`` writes ``--videos`` MUSIC-AVQA-style scenes,
   all ``--seconds`` long at ``--size`` and ``--fps`` with an audio track (H.264 + AAC);
   ``python cli.py extract`` stores them with the default encoders (ViT-B-32 + VGGish, random
   weights: latency does not depend on the weight values, T = 60); ``python cli.py train
   --epochs 1 --set compile=false`` trains the default model.  The timed video is the first.
2. Cold: ``python cli.py ask VIDEO QUESTION --run RUN --json`` as a subprocess, ``--cold-runs``
   times; wall time including process start, imports and model load.
3. Loaded: ``infer.ask.Asker`` built once (timed), one untimed call, then ``--repeats`` times
   ``Asker.video`` (decode + encode) and ``Asker.ask`` with one question, and again with all the
   ``--question`` values in one call (one decode and one video encoding shared); median and min,
   and the split of the one-question call: decode, encode video (CLIP + VGGish), encode question
   (CLIP text), model.

Goal (issue 15): one 60-s video answers in < 2 s on a GPU once the models are loaded.
CPU smoke run: ``--videos 4 --seconds 2 --size 96x64 --fps 10 --T 2 --clip-model ViT-S-32
--repeats 1 --cold-runs 1``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import torch

from benchlib import device_name, pick_device, print_table, sync  # noqa: E402  (adds repo to path)
from infer.ask import Asker, AskSettings  # noqa: E402
from infer.ask_cli import split_options  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

GOAL_S = 2.0
#: MUSIC-AVQA-style questions (any text costs the same: one CLIP text pass for all of them)
DEFAULT_QUESTIONS = [
    "How many sounding instruments are in the video?",
    "Which instrument makes the sound first?",
    "Is the violin in the video always playing?",
    "Where is the first sounding instrument?",
    "What is the left instrument of the first sounding instrument?",
]
SPLIT = ("decode", "encode_video", "encode_text", "model")
COLUMNS = ["measure", "runs", "median s", "min s", "CPU s (median)", "goal"]


def run_logged(cmd: list[str], log: Path) -> float:
    """Run one build command from the repository root, appending its output to ``log``; the
    wall seconds it took.  A failure raises with the end of its output."""
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    dt = time.perf_counter() - t
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}rc={proc.returncode} ({dt:.1f} s)\n")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:4])} failed ({proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return dt


def cli(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "cli.py"), *args]


def build(args: argparse.Namespace, work: Path) -> tuple[Path, Path, dict]:
    """synth -> extract -> train in ``work``, skipped when the run has a checkpoint (synth and
    extract resume what an interrupted build left); the run, the timed video and the seconds of
    each step."""
    data, store, runs = work / "data", work / "feats.h5", work / "runs"
    run, log = runs / "ask", work / "build.log"
    secs = {}
    if not (run / "checkpoints").is_dir():
        secs["synth"] = run_logged(cli(
            "synth", "--out", str(data), "--videos", str(args.videos), "--seed", "0",
            "--min-seconds", f"{args.seconds:g}", "--max-seconds", f"{args.seconds:g}",
            "--long-fraction", "0", "--no-audio-fraction", "0", "--size", args.size,
            "--fps", f"{args.fps:g}"), log)
        secs["extract"] = run_logged(cli(
            "extract", "--videos", str(data / "videos"), "--annotations", str(data / "annotations"),
            "--out", str(store), "--clip-weights", "random", "--vggish-weights", "random",
            "--clip-model", args.clip_model, "-T", str(args.T), "--device", args.device,
            "--strict"), log)
        shutil.rmtree(run, ignore_errors=True)  # a run that died before its first checkpoint
        # no torch.compile of the training step: it would add its compile time to a build whose
        # weights do not matter here (ask runs the plain model)
        secs["train"] = run_logged(cli(
            "train", "--store", str(store), "--out", str(runs), "--name", "ask", "--epochs", "1",
            "--device", args.device, "--no-progress", "--set", "compile=false"), log)
    return run, sorted((data / "videos").glob("*.mp4"))[0], secs


def video_info(path: Path) -> dict:
    """Duration, frame size and rate of the timed video, as its container states them."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return {"seconds": round(float(c.duration or 0) / 1e6, 2), "size": f"{v.width}x{v.height}",
                "fps": round(float(v.average_rate or 0), 2), "audio": bool(c.streams.audio)}


def cold_command(run: Path, video: Path, question: str, device: str,
                 options: str | None) -> list[str]:
    return cli("ask", str(video), question, "--run", str(run), "--device", device, "--json",
               *(["--options", options] if options else []))


def cpu_seconds(children: bool = False) -> float:
    """User + system CPU seconds so far, of this process (all threads) or of its waited-for
    children."""
    t = os.times()
    return t.children_user + t.children_system if children else t.user + t.system


def time_cold(run: Path, video: Path, question: str, device: str,
              options: str | None) -> tuple[float, float, dict]:
    """Wall and CPU seconds of the ``ask`` command as a fresh process, and its JSON answer."""
    c, t = cpu_seconds(children=True), time.perf_counter()
    proc = subprocess.run(cold_command(run, video, question, device, options), cwd=ROOT,
                          capture_output=True, text=True)
    dt, cpu = time.perf_counter() - t, cpu_seconds(children=True) - c
    if proc.returncode != 0:
        raise RuntimeError(f"python cli.py ask failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                           f"{proc.stderr[-2000:]}")
    return dt, cpu, json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][0])


def one_call(asker: Asker, video: Path, questions: list[str],
             options: str | None) -> tuple[float, float, dict]:
    """Wall and CPU seconds of decode + encode + model for ``questions`` about ``video``, and
    the split the asker measured."""
    sync(asker.device)
    c, t = cpu_seconds(), time.perf_counter()
    answers = asker.ask(asker.video(video), questions,
                        split_options([options] if options else None, len(questions)))
    sync(asker.device)
    return time.perf_counter() - t, cpu_seconds() - c, answers[0].timing


def time_loaded(asker: Asker, video: Path, questions: list[str], repeats: int,
                options: str | None) -> dict:
    """``repeats`` timed calls (after one untimed) for one question and for all ``questions``:
    wall and CPU seconds of each call, and the split of the one-question calls."""
    first = one_call(asker, video, questions[:1], options)[:2]
    res = {"first": first, "one": [], "one_cpu": [], "many": [], "many_cpu": [],
           "split": {k: [] for k in SPLIT}, "T": asker.cfg.T}
    for _ in range(repeats):
        dt, cpu, timing = one_call(asker, video, questions[:1], options)
        res["one"].append(dt)
        res["one_cpu"].append(cpu)
        for k in SPLIT:
            res["split"][k].append(timing[k])
    for _ in range(repeats):
        dt, cpu, _ = one_call(asker, video, questions, options)
        res["many"].append(dt)
        res["many_cpu"].append(cpu)
    return res


def stats(xs: list[float]) -> dict:
    return {"median_s": statistics.median(xs), "min_s": min(xs), "runs": len(xs)}


def row(name: str, xs: list[float], cpu: list[float] | None = None, goal: str = "") -> list:
    s = stats(xs)
    return [name, s["runs"], f"{s['median_s']:.3f}", f"{s['min_s']:.3f}",
            f"{statistics.median(cpu):.3f}" if cpu else "-", goal]


def table_rows(res: dict, n_q: int, on_gpu: bool) -> list[list]:
    """The rows: cold runs, model load, warm-up, the loaded calls and their split."""
    verdict = ("met" if statistics.median(res["one"]) < GOAL_S else "missed") if on_gpu else "(CPU)"
    rows = [row(f"cold: python cli.py ask VIDEO QUESTION (run {i + 1}; start + model load "
                "included)", [wall], [cpu]) for i, (wall, cpu) in enumerate(res["cold"])]
    rows.append(row("loaded: build the Asker (encoders + model), once", [res["load_s"]]))
    rows.append(row("loaded: first call (warm-up, not in the rows below)", [res["first"][0]],
                    [res["first"][1]]))
    one = row("loaded: 1 question (decode + encode + model)", res["one"], res["one_cpu"],
              f"< {GOAL_S:g} s on a GPU: {verdict}")
    rows.append([f"**{one[0]}**", one[1], f"**{one[2]}**"] + one[3:])
    names = {"decode": f"decode ({res['T']} frames + audio)",
             "encode_video": "encode video (CLIP + VGGish)",
             "encode_text": "encode question (CLIP text)", "model": "model (SHMamba)"}
    rows += [row(f"  of which {names[k]}", res["split"][k]) for k in SPLIT]
    rows.append(row(f"loaded: {n_q} questions in one call", res["many"], res["many_cpu"]))
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                    help="device of the encoders and the model (build and ask)")
    ap.add_argument("--repeats", type=int, default=10, help="timed calls with the models loaded")
    ap.add_argument("--cold-runs", type=int, default=2, help="runs of the cold ask command")
    ap.add_argument("--workdir", default=None,
                    help="folder of the dataset, store and run (kept and reused; default: a temp "
                         "folder, removed)")
    ap.add_argument("--run", default=None, help="an existing run: skip the build (needs --video)")
    ap.add_argument("--video", default=None, help="the video to time (with --run)")
    ap.add_argument("--question", action="append", default=None,
                    help="question (repeatable; the first is the one-question case; default: 5 "
                         "MUSIC-AVQA-style questions)")
    ap.add_argument("--options", default=None,
                    help='multiple-choice runs: the answer options "a|b|c|d" of every question')
    ap.add_argument("--videos", type=int, default=4, help="videos of the built dataset")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each built video (s)")
    ap.add_argument("--size", default="640x360", help="frame size WxH of the built videos")
    ap.add_argument("--fps", type=float, default=25.0, help="frame rate of the built videos")
    ap.add_argument("--T", type=int, default=60, help="segments per video of the built store")
    ap.add_argument("--clip-model", default="ViT-B-32", help="open_clip model of the built store")
    ap.add_argument("--json", default=None, help="write the results as JSON to this file")
    args = ap.parse_args(argv)
    if (args.run is None) != (args.video is None):
        ap.error("--run and --video go together")
    if args.repeats < 1 or args.cold_runs < 0 or args.videos < 4:
        ap.error("need --repeats >= 1, --cold-runs >= 0 and --videos >= 4 (train, val and test "
                 "each need a video)")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = pick_device(args.device)
    questions = args.question or DEFAULT_QUESTIONS
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ask-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        build_s = {}
        if args.run:
            run, video = Path(args.run), Path(args.video)
        else:
            run, video, build_s = build(args, work)
            print(f"built: {', '.join(f'{k} {v:.1f} s' for k, v in build_s.items()) or 'reused'} "
                  f"({work})", flush=True)
        load_avg = [os.getloadavg()[0]]  # the CPU machine may be shared: say how busy it was
        cold, cold_answer = [], None
        for _ in range(args.cold_runs):
            wall, cpu, cold_answer = time_cold(run, video, questions[0], args.device, args.options)
            cold.append((wall, cpu))
        t = time.perf_counter()
        asker = Asker(AskSettings(run=str(run), device=args.device))
        sync(asker.device)
        load_s = time.perf_counter() - t
        res = time_loaded(asker, video, questions, args.repeats, args.options)
        load_avg.append(os.getloadavg()[0])
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    res.update(cold=cold, cold_answer=cold_answer, load_s=load_s, build_s=build_s,
               load_avg=load_avg)
    return report(args, device_name(device), device.type == "cuda", video, questions, res)


def report(args: argparse.Namespace, dev_name: str, on_gpu: bool, video: Path,
           questions: list[str], res: dict) -> dict:
    """Print the table (and the JSON) and return what it holds."""
    info = video_info(video)
    rows = table_rows(res, len(questions), on_gpu)
    one, many = stats(res["one"]), stats(res["many"])
    meta = {
        "device": dev_name, "video": info, "questions": questions, "repeats": args.repeats,
        "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_avg_1min": res["load_avg"],
        "build_s": {k: round(v, 2) for k, v in res["build_s"].items()},
        "cold_command": f"python cli.py ask VIDEO QUESTION --run RUN --device {args.device} --json",
        "cold_cli_s": [w for w, _ in res["cold"]], "cold_cli_cpu_s": [c for _, c in res["cold"]],
        "cold_cli_timing": res["cold_answer"]["timing"] if res["cold_answer"] else None,
        "model_load_s": res["load_s"], "first_call_s": res["first"][0],
        "loaded_one_question": one, "loaded_many_questions": many,
        "split": {k: stats(v) for k, v in res["split"].items()},
        "raw_s": {k: res[k] for k in ("one", "one_cpu", "many", "many_cpu")},
        "goal": f"< {GOAL_S:g} s for one 60-s video on a GPU, models loaded",
    }
    print_table(f"ask latency - one {info['seconds']:g}-s {info['size']} {info['fps']:g} fps video "
                f"- {dev_name}", COLUMNS, rows, json_out=args.json, meta=meta)
    if args.json:  # the headline numbers also at the top level of the file
        data = json.loads(Path(args.json).read_text())
        data.update({"cold_cli_s": meta["cold_cli_s"], "model_load_s": res["load_s"],
                     "loaded_median_s": one["median_s"], "loaded_min_s": one["min_s"],
                     "many_median_s": many["median_s"]})
        Path(args.json).write_text(json.dumps(data, indent=1))
    where = "met" if one["median_s"] < GOAL_S else "missed"
    print(f"models loaded: {one['median_s']:.3f} s median for one question about a "
          f"{info['seconds']:g}-s video (goal < {GOAL_S:g} s on a GPU: "
          f"{where + ' on ' + dev_name if on_gpu else 'not judged on a CPU'})"
          + (f"; cold command {min(meta['cold_cli_s']):.2f} s" if res["cold"] else ""))
    return {"rows": rows, "meta": meta}


if __name__ == "__main__":
    main()
