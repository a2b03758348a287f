"""Extraction throughput: our extractor vs a peer-style pipeline, in the same run.

    python benchmarks/extract_throughput.py [--K 64] [--seconds 60] [--workers 1 2 4 8 16]
        [--clip-model ViT-B-32] [--videos-dir DIR] [--peer-videos N] [--json out.json]

1. Makes K synthetic ``--seconds``-long 640x360 25 fps H.264 + AAC (44.1 kHz) videos (moving
   coloured shapes, a tone per shape) with ``synth.avwrite.write_av``, cached in
   ``--videos-dir`` so reruns reuse them.
2. Times the command a user types, with its defaults: ``python cli.py extract --videos DIR --out
   X`` as a subprocess (plus ``--clip-weights random --vggish-weights random``, since pretrained
   weights may not be on the machine, and ``--clip-model``/``-T``/``--device``/``--precision``
   only where this run's differ from the defaults; never a tuning option such as ``--workers``);
   its wall time includes process start, imports and model building.  ``--also-fp32`` times it
   once more with ``--precision fp32`` (on the CPU the default is bf16 where the CPU has native
   bf16: the two side by side).
3. Builds the encoders once (CLIP ``--clip-model`` and VGGish, seeded random weights: the speed
   does not depend on the weight values) and times, on the same videos:
   * ours: ``extract.pipeline.extract`` (what ``python cli.py extract`` runs, minus process start
     and model loading, reported separately) once per decode-worker count in ``--workers``;
   * peer-style (``peer_style.py``): ffmpeg to 1 fps JPEG files + a 16 kHz wav per video, then per
     video PIL load + CLIP preprocess + one CLIP forward, and one VGGish forward, one ``.npy``
     per video per feature; on the first ``--peer-videos`` videos (default all: it works one video
     at a time, so its rate does not depend on how many).  On the GPU it runs our encoders (same
     precision); on the CPU encoders built the same way in float32, as the peers' code runs there
     (OpenAI ``clip.load`` and torchvggish on the CPU are float32), whatever ``--precision``.
   Each row of the table says the precision it ran at (``compute_precision``).
4. Where the time goes: our stages measured one by one on ``--stage-videos`` videos with the
   pipeline's own functions (``decode_video`` in one single-threaded decode worker process, as
   extraction runs it; ``ClipEncoder.encode_images`` and ``VGGishEncoder.encode`` on batches of
   ``--batch-size`` frames across videos; ``write_shard``), next to decord alone on the same
   videos and frames in the same worker (``VideoReader.get_batch`` at the native size with
   ``num_threads=1`` and with decord's automatic threads, and ``AudioReader`` at 16 kHz mono), our
   ``read_audio`` alone (the configured reader, PyAV by default) there, and the peer pipeline's
   stages.  Also the start-up time of the default number of decode workers.

CPU smoke run: ``--K 2 --seconds 4 --T 4 --clip-model ViT-S-32 --workers 0 1``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# ``common`` (torch, rich) is imported inside the functions: decode workers are spawned with this
# script as their main module and re-run its top level, which must stay light.

AUDIO_RATE = 44100  # like real uploads; both pipelines resample to 16 kHz


# ---- synthetic input videos ------------------------------------------------------------------


def _disc(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[:2 * radius, :2 * radius]
    return (yy - radius + 0.5) ** 2 + (xx - radius + 0.5) ** 2 <= radius ** 2


def synthetic_frames(seed: int, seconds: float, width: int, height: int, fps: float):
    """Frames [H, W, 3] uint8 of moving, bouncing coloured rectangles and discs on a gradient."""
    rng = np.random.default_rng(seed)
    n = max(1, int(round(seconds * fps)))
    base = rng.integers(0, 96, 3)
    grad = np.linspace(0.0, 1.0, height)[:, None, None] * rng.integers(0, 96, 3)
    bg = np.broadcast_to((base + grad).astype(np.uint8), (height, width, 3)).copy()
    shapes = []
    for k in range(int(rng.integers(3, 6))):
        r = int(rng.integers(max(4, height // 16), max(5, height // 5)))
        r = max(2, min(r, height // 2 - 1, width // 2 - 1))
        shapes.append({
            "r": r, "disc": _disc(r) if k % 2 else None,
            "color": rng.integers(64, 256, 3).astype(np.uint8),
            "pos": np.array([rng.uniform(0, width - 2 * r), rng.uniform(0, height - 2 * r)]),
            "vel": rng.uniform(-6, 6, 2) * 25.0 / fps,
        })
    for _ in range(n):
        frame = bg.copy()
        for s in shapes:
            r, pos, vel = s["r"], s["pos"], s["vel"]
            pos += vel
            for d, lim in ((0, width - 2 * r), (1, height - 2 * r)):
                if pos[d] < 0 or pos[d] > lim:
                    vel[d] = -vel[d]
                    pos[d] = min(max(pos[d], 0), lim)
            x, y = int(pos[0]), int(pos[1])
            patch = frame[y:y + 2 * r, x:x + 2 * r]
            if s["disc"] is None:
                patch[:] = s["color"]
            else:
                patch[s["disc"]] = s["color"]
        yield frame


def synthetic_tones(seed: int, seconds: float, sample_rate: int = AUDIO_RATE) -> np.ndarray:
    """A few tones whose pitch changes every half second, mixed, in [-1, 1]."""
    rng = np.random.default_rng([seed, 1])
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    wav = np.zeros_like(t)
    for _ in range(3):
        steps = rng.integers(-12, 13, int(np.ceil(seconds * 2)) + 1)
        hz = rng.uniform(200, 800) * 2.0 ** (steps[(t * 2).astype(int)] / 12.0)
        wav += 0.2 * np.sin(2 * np.pi * hz * t)
    return (wav / 3.0).astype(np.float32)


def _write_one(path: str, seed: int, seconds: float, width: int, height: int, fps: float) -> str:
    from synth.avwrite import write_av

    write_av(path, synthetic_frames(seed, seconds, width, height, fps), fps=fps,
             audio=synthetic_tones(seed, seconds), sample_rate=AUDIO_RATE)
    return path


def make_videos(folder: str | Path, K: int, seconds: float, width: int, height: int, fps: float,
                workers: int = 0) -> tuple[list[Path], int]:
    """The K cached videos (made where missing, ``workers`` processes in parallel); returns the
    paths and how many were made now."""
    folder = Path(folder) / f"{seconds:g}s_{width}x{height}_{fps:g}fps"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"synth{i:04d}.mp4" for i in range(K)]
    todo = [(str(p), i) for i, p in enumerate(paths) if not p.is_file() or p.stat().st_size == 0]
    if todo:
        workers = min(len(todo), workers or os.cpu_count() or 1)
        if workers <= 1:
            for p, i in todo:
                _write_one(p, i, seconds, width, height, fps)
        else:
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
                list(pool.map(_write_one, *zip(*[(p, i, seconds, width, height, fps)
                                                  for p, i in todo])))
    return paths, len(todo)


# ---- measurements -----------------------------------------------------------------------------


def link_inputs(videos: list[Path], folder: Path) -> Path:
    """A folder holding exactly ``videos`` (symlinks, one name per position, so a video listed
    twice is two inputs), so the extractor sees only those."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for i, v in enumerate(videos):
        (folder / f"{i:05d}_{v.name}").symlink_to(v.resolve())
    return folder


def run_ours(cfg_kwargs: dict, inputs: Path, out: Path, workers: int, n_videos: int) -> float:
    """Seconds for one ``extract`` run over ``inputs`` into a fresh store ``out``."""
    from extract.config import ExtractConfig
    from extract.pipeline import extract

    if out.parent.exists():
        shutil.rmtree(out.parent)
    cfg = ExtractConfig(videos=str(inputs), out=str(out), workers=workers, **cfg_kwargs)
    t = time.perf_counter()
    summary = extract(cfg, progress=False)
    dt = time.perf_counter() - t
    if summary.failures or summary.videos_extracted != n_videos:
        raise RuntimeError(f"our extraction did not extract all {n_videos} videos: "
                           f"{summary.videos_extracted} extracted, failures {summary.failures[:3]}")
    return dt


def _decode_stage(paths: list[str], spec) -> dict:
    """Run in one decode worker process: our ``decode_video`` on ``paths`` (timed, after one
    untimed call for imports), then decord alone on the same frames and audio, then our audio
    read alone (the spec's reader)."""
    from decord import AudioReader, VideoReader, cpu

    from extract.decode import (_frame_timing, decode_video, frame_indices, read_audio,
                                segment_centres)
    from extract.logmel import SAMPLE_RATE

    decode_video(paths[0], spec)
    t = time.perf_counter()
    decoded = [decode_video(p, spec) for p in paths]
    t_decode = time.perf_counter() - t
    idx = []
    for p in paths:  # the frames our decoder keeps (untimed)
        vr = VideoReader(p, ctx=cpu(0), num_threads=1)
        starts, duration = _frame_timing(vr, p)
        idx.append(np.unique(frame_indices(starts, segment_centres(duration, spec)[0])).tolist())
    bare = {}
    for name, threads in (("get_batch_1thread", 1), ("get_batch_auto_threads", 0)):
        t = time.perf_counter()
        for p, ix in zip(paths, idx):
            VideoReader(p, ctx=cpu(0), num_threads=threads).get_batch(ix).asnumpy()
        bare[name] = time.perf_counter() - t
    t = time.perf_counter()
    for p in paths:
        AudioReader(p, ctx=cpu(0), sample_rate=SAMPLE_RATE, mono=True)[:].asnumpy()
    bare["audio_reader"] = time.perf_counter() - t
    t = time.perf_counter()
    for p in paths:
        read_audio(p, spec.front_end.sample_rate, spec.reader)
    return {"decoded": decoded, "decode": t_decode, "bare": bare,
            "read_audio": time.perf_counter() - t}


def worker_start_seconds(n: int) -> float:
    """Seconds to spawn ``n`` decode worker processes as extraction does and have each load the
    decode modules (``extract.decode_worker.warm_up``)."""
    from extract.decode_worker import single_threaded_env, warm_up
    from extract.ahead import _new_pool

    t = time.perf_counter()
    pool = _new_pool(n)
    try:
        with single_threaded_env():
            futs = [pool.submit(warm_up) for _ in range(n)]
        for f in futs:
            f.result()
        dt = time.perf_counter() - t
    finally:
        pool.shutdown(wait=True)
    return dt


def our_stages(videos: list[Path], cfg, enc, attrs: dict, out: Path) -> tuple[dict, dict, float]:
    """Seconds per stage of our pipeline over ``videos``, each stage measured on its own with the
    pipeline's functions: decode (one single-threaded worker process), CLIP and VGGish on
    cross-video batches, write; decord alone on the same videos in the same worker; and our
    audio read alone there."""
    import torch

    from benchlib import sync
    from extract.decode import DecodeSpec
    from extract.decode_worker import single_threaded_env
    from extract.discover import stat_video
    from extract.ahead import _new_pool
    from extract.encode import EncodedVideo
    from extract.shards import write_shard

    dev = enc.clip.device
    spec = DecodeSpec.from_config(cfg, enc.clip.image_size)
    pool = _new_pool(1, nice=0)
    try:
        with single_threaded_env():
            fut = pool.submit(_decode_stage, [str(v) for v in videos], spec)
        res = fut.result()
    finally:
        pool.shutdown(wait=True)
    decoded, t_decode = res["decoded"], res["decode"]

    from extract.config import encoder_batch_size

    bs = encoder_batch_size(cfg, dev.type)
    frames = np.concatenate([d.frames for d in decoded])
    mel = np.concatenate([d.audio for d in decoded])
    with torch.no_grad():
        sync(dev)
        t = time.perf_counter()
        visual = np.concatenate([enc.clip.encode_images(frames[lo:lo + bs])[0]
                                 for lo in range(0, len(frames), bs)])
        sync(dev)
        t_clip = time.perf_counter() - t
        t = time.perf_counter()
        audio = np.concatenate([enc.audio.encode(mel[lo:lo + bs]) for lo in range(0, len(mel), bs)])
        sync(dev)
        t_vggish = time.perf_counter() - t

    T = cfg.T
    encoded = [EncodedVideo(stat_video(v), audio[i * T:(i + 1) * T], visual[i * T:(i + 1) * T], None,
                            d.audio_present, d.n_segments, d.duration)
               for i, (v, d) in enumerate(zip(videos, decoded))]
    if out.parent.exists():
        shutil.rmtree(out.parent)
    out.parent.mkdir(parents=True)
    t = time.perf_counter()
    write_shard(out, attrs, encoded)
    t_write = time.perf_counter() - t
    stages = {"decode": t_decode, "CLIP": t_clip, "VGGish": t_vggish, "write": t_write}
    return stages, res["bare"], res["read_audio"]


def default_command(inputs: Path, out: Path, args: argparse.Namespace,
                    weights: tuple[str, str] = ("random", "random"),
                    precision: str | None = None) -> list[str]:
    """``python cli.py extract --videos DIR --out X`` as a user types it: no tuning option; random
    weights or weight files (pretrained ones may not be here; the default weights are files loaded
    from the hub cache), and the model/T/device/precision of this run (``precision``, else
    ``--precision``) only where they differ from the defaults."""
    cmd = [sys.executable, str(ROOT / "cli.py"), "extract", "--videos", str(inputs), "--out", str(out),
           "--clip-weights", weights[0], "--vggish-weights", weights[1]]
    for flag, value, default in (("--clip-model", args.clip_model, "ViT-B-32"), ("-T", args.T, 60),
                                 ("--device", args.device, "auto"),
                                 ("--precision", precision or args.precision, "auto")):
        if value != default:
            cmd += [flag, str(value)]
    return cmd


def run_default(inputs: Path, out: Path, args: argparse.Namespace, n_videos: int,
                weights: tuple[str, str] = ("random", "random"),
                precision: str | None = None) -> tuple[float, str]:
    """Wall seconds of the default command over ``inputs`` into a fresh store ``out`` (process
    start, imports and model building included); checks that it extracted every video."""
    from store import FeatureStore

    if out.parent.exists():
        shutil.rmtree(out.parent)
    out.parent.mkdir(parents=True)
    cmd = default_command(inputs, out, args, weights, precision)
    env = dict(os.environ, COLUMNS="250", PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [
        os.environ.get("PYTHONPATH", "")] if p]))   # wide: the summary's 'seconds' row unwrapped
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"the default extract command failed ({proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    # the command's own clock and milestones: the rest of the wall is interpreter start + imports
    print(next((ln.strip() for ln in proc.stdout.splitlines() if "seconds" in ln),
               "default command: no 'seconds' row in its summary"), flush=True)
    with FeatureStore(out) as fs:
        if fs.n_videos != n_videos:
            raise RuntimeError(f"the default extract command stored {fs.n_videos} of {n_videos} videos")
        ran_at = (fs.attrs.get("extractor_config") or {}).get("compute_precision", "?")
    shown = " ".join(["python", "cli.py"] + cmd[2:]).replace(str(inputs), "DIR").replace(str(out), "X")
    for w, name in zip(weights, ("CLIP.safetensors", "VGGISH.pt")):
        shown = shown.replace(w, name) if w != "random" else shown
    return dt, shown, ran_at


def save_weight_files(folder: Path, clip_model: str) -> tuple[str, str]:
    """The seeded random CLIP and VGGish weights saved to files (in a subprocess, so that this
    process stays as it was); (clip file, vggish file)."""
    folder.mkdir(parents=True, exist_ok=True)
    code = ("import sys; sys.path.insert(0, sys.argv[1]);"
            "from extract.encoders import ClipEncoder; from extract.vggish import VGGishEncoder;"
            "from extract.weights import resolve_clip_weights, resolve_vggish_weights, save_weights;"
            "save_weights(ClipEncoder(sys.argv[3], resolve_clip_weights(sys.argv[3], 'random:0')).model,"
            " sys.argv[2] + '/clip.safetensors');"
            "save_weights(VGGishEncoder(resolve_vggish_weights('random:0')).model, sys.argv[2] + '/vggish.pt')")
    subprocess.run([sys.executable, "-c", code, str(ROOT), str(folder), clip_model], check=True,
                   capture_output=True)
    return str(folder / "clip.safetensors"), str(folder / "vggish.pt")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--K", type=int, default=64, help="number of videos")
    ap.add_argument("--distinct", type=int, default=0,
                    help="make only this many different videos and repeat them up to K inputs "
                         "(each input is decoded in full; saves generation time; 0 = K)")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each video (s)")
    ap.add_argument("--width", type=int, default=640, help="video width (px)")
    ap.add_argument("--height", type=int, default=360, help="video height (px)")
    ap.add_argument("--fps", type=float, default=25.0, help="video frame rate")
    ap.add_argument("--videos-dir", default=str(Path(tempfile.gettempdir()) / "shmamba-bench-videos"),
                    help="cache folder for the generated videos (reused by later runs)")
    ap.add_argument("--gen-workers", type=int, default=0,
                    help="processes that make missing videos (0 = one per CPU core)")
    ap.add_argument("--work-dir", default=None,
                    help="folder for the stores and peer files (default: a temp folder, removed)")
    ap.add_argument("--T", type=int, default=60, help="segments per video (1 per second)")
    ap.add_argument("--clip-model", default="ViT-B-32", help="open_clip model for both pipelines")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16],
                    help="decode worker counts to time our extractor with (0 = in-process)")
    ap.add_argument("--batch-size", type=int, default=0,
                    help="frames per encoder batch (ours; 0 = the extractor's default for the device)")
    ap.add_argument("--shard-size", type=int, default=64, help="videos per shard (ours)")
    ap.add_argument("--stage-videos", type=int, default=16,
                    help="videos used to time our stages one by one (at most K)")
    ap.add_argument("--warmup", type=int, default=1,
                    help="videos run through both pipelines before timing (0 = none)")
    ap.add_argument("--skip-peer", action="store_true", help="do not time the peer-style pipeline")
    ap.add_argument("--peer-videos", type=int, default=0,
                    help="time the peer-style pipeline on the first N videos (0 = all K)")
    ap.add_argument("--skip-default", action="store_true",
                    help="do not time the default command (python cli.py extract as a subprocess)")
    ap.add_argument("--file-weights-row", action="store_true",
                    help="also time the default command with seeded random weights saved to files "
                         "(loaded as the default weights are, from a file: no random init)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="encoder device")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                    help="encoder precision of ours, and of the peer-style pipeline on the GPU "
                         "(on the CPU it runs float32, as the peers do); auto on the CPU = bf16 "
                         "where the CPU has native bf16, else float32")
    ap.add_argument("--also-fp32", action="store_true",
                    help="also time the default command with --precision fp32 (next to the "
                         "default's precision; skipped when --precision is fp32)")
    ap.add_argument("--json", default=None, help="write the results as JSON to this file")
    args = ap.parse_args(argv)
    if args.K < 1 or args.T < 1 or args.seconds <= 0:
        ap.error("--K, --T and --seconds must be positive")

    from benchlib import device_name, pick_device, print_table
    from qa.annotations import vocabulary_for
    from extract.config import ExtractConfig
    from common.cores import usable_cores
    from common.device import resolve_precision
    from extract.decode_worker import default_workers
    from extract.encoders import get_encoders
    from extract.encode import store_attrs

    device = pick_device(args.device)
    dev_name = device_name(device)
    t = time.perf_counter()
    distinct = min(args.K, args.distinct) if args.distinct > 0 else args.K
    videos, made = make_videos(args.videos_dir, distinct, args.seconds, args.width, args.height,
                               args.fps, args.gen_workers)
    videos = [videos[i % distinct] for i in range(args.K)]  # the same decode work per input
    t_make = time.perf_counter() - t
    if made:
        print(f"made {made} videos in {t_make:.1f} s ({t_make / made:.2f} s per video wall, "
              f"{args.gen_workers or os.cpu_count()} processes)", flush=True)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="extract-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    cfg_kwargs = dict(T=args.T, clip_model=args.clip_model, clip_weights="random",
                      vggish_weights="random", batch_size=args.batch_size, shard_size=args.shard_size,
                      device=args.device, precision=args.precision)
    K = len(videos)
    n_peer = K if args.peer_videos <= 0 else min(args.peer_videos, K)
    #: the default command's timed runs: key ('' = as typed, 'fp32', 'files') -> (row label,
    #: seconds, command shown, precision it ran at)
    runs: dict[str, tuple[str, float, str, str]] = {}
    ours_at = resolve_precision(device, args.precision)   # what --precision means here
    # the peers' code (OpenAI clip.load, torchvggish) runs float32 on the CPU
    peer_precision = "fp32" if device.type == "cpu" else args.precision
    peer_at = resolve_precision(device, peer_precision)
    try:
        inputs = link_inputs(videos, work / "inputs")
        # -- the command a user types, first (nothing of ours is loaded in this process yet) -----
        variants = [] if args.skip_default else [("", "default command", lambda: {})]
        if variants and args.also_fp32 and args.precision != "fp32":
            variants.append(("fp32", "default command at float32", lambda: {"precision": "fp32"}))
        if variants and args.file_weights_row:   # the files are saved after the first run
            variants.append(("files", "default command, weights from files (as the default "
                             "weights load from the hub cache)",
                             lambda: {"weights": save_weight_files(work / "weights", args.clip_model)}))
        for key, label, options in variants:
            sec, cmd, at = run_default(inputs, work / "-".join(filter(None, ("default", key))) /
                                       "feats.h5", args, K, **options())
            runs[key] = (label, sec, cmd, at)
            print(f"{label} ({at}): {K / sec:.3f} videos/s ({sec:.2f} s)", flush=True)
        t_workers = worker_start_seconds(default_workers())

        base_cfg = ExtractConfig(videos=str(inputs), out=str(work / "unused.h5"), **cfg_kwargs)
        t = time.perf_counter()
        enc = get_encoders(base_cfg)  # cached: every extract() below reuses these models
        t_models = time.perf_counter() - t
        peer_enc = enc   # the same models on the GPU; float32 ones on the CPU (not timed)
        if not args.skip_peer and peer_at != ours_at:
            peer_enc = get_encoders(replace(base_cfg, precision=peer_precision))

        if args.warmup:
            warm = videos[:args.warmup]
            run_ours(cfg_kwargs, link_inputs(warm, work / "warm-inputs"), work / "warm" / "feats.h5",
                     args.workers[0], len(warm))
            if not args.skip_peer:
                from peer_style import peer_extract
                peer_extract(warm, work / "warm-peer-tmp", work / "warm-peer", peer_enc.clip,
                             peer_enc.audio, args.T)

        # -- ours, per decode-worker count ------------------------------------------------------
        ours: dict[int, float] = {}
        for w in args.workers:
            ours[w] = run_ours(cfg_kwargs, inputs, work / f"ours-w{w}" / "feats.h5", w, len(videos))

        # -- peer-style ------------------------------------------------------------------------
        peer = None
        if not args.skip_peer:
            from peer_style import peer_extract
            peer = peer_extract(videos[:n_peer], work / "peer-tmp", work / "peer-out",
                                peer_enc.clip, peer_enc.audio, args.T)

        # -- where the time goes ---------------------------------------------------------------
        n_stage = max(1, min(args.stage_videos, len(videos)))
        attrs = store_attrs(base_cfg, enc, vocabulary_for(base_cfg.dataset), 0)
        stages, bare, t_read_audio = our_stages(videos[:n_stage], base_cfg, enc, attrs,
                                  work / "stages" / "feats.h5")
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)

    # -- tables ---------------------------------------------------------------------------------
    peer_rate = n_peer / peer.total if peer is not None else None
    stage_rows = []
    ours_total = sum(stages.values())
    for name, sec in stages.items():
        stage_rows.append(["ours (measured stage by stage)", name, f"{sec / n_stage:.4f}",
                           f"{100 * sec / ours_total:.1f}%"])
    bare_av = bare["get_batch_1thread"] + bare["audio_reader"]
    decode_vs_bare = stages["decode"] / bare_av
    for name, sec in (("get_batch, same frames, native size, num_threads=1", bare["get_batch_1thread"]),
                      ("get_batch, same frames, native size, auto threads",
                       bare["get_batch_auto_threads"]),
                      ("AudioReader 16 kHz mono", bare["audio_reader"]),
                      ("get_batch (1 thread) + AudioReader", bare_av)):
        stage_rows.append(["decord alone (same videos, same worker)", name, f"{sec / n_stage:.4f}", "-"])
    stage_rows.append(["ours alone (same videos, same worker)",
                       f"read_audio ({base_cfg.audio_reader}) 16 kHz mono",
                       f"{t_read_audio / n_stage:.4f}", "-"])
    stage_rows.append(["ours / decord alone", "decode / (get_batch 1 thread + AudioReader)",
                       f"{decode_vs_bare:.2f}x", "goal <= 1.5x"])
    stage_rows.append(["ours", f"start {default_workers()} decode workers (spawn + imports)",
                       f"{t_workers:.3f} (total)", "-"])
    if peer is not None:
        for name in ("ffmpeg_frames", "ffmpeg_audio", "clip", "vggish", "write"):
            sec = getattr(peer, name)
            stage_rows.append(["peer-style", name.replace("_", " ").replace("clip", "PIL + CLIP")
                               .replace("vggish", "wav + VGGish"), f"{sec / n_peer:.4f}",
                               f"{100 * sec / peer.total:.1f}%"])
    stage_title = (f"Extraction: where the time goes (s per video) - {dev_name}; encoders: ours "
                   f"{ours_at}" + (f", peer-style {peer_at}" if peer is not None else ""))
    stage_cols = ["pipeline", "stage", "s/video", "share"]
    print_table(stage_title, stage_cols, stage_rows)

    rows = []
    for label, sec, cmd, at in runs.values():
        rate = K / sec
        rows.append([f"ours, {label}: {cmd}", f"default ({default_workers()})", K, f"{sec:.2f}",
                     f"{rate:.3f}", f"{rate / peer_rate:.2f}" if peer_rate else "-", at])
    default_s, default_cmd, default_at = runs[""][1:] if "" in runs else (None, None, None)
    default_rate = K / default_s if default_s else None
    variant_meta = {}
    for key in ("files", "fp32"):
        _, sec, cmd, _ = runs.get(key, (None, None, None, None))
        variant_meta.update({f"default_{key}_command": cmd, f"default_{key}_extract_s": sec,
                             f"default_{key}_videos_per_s": K / sec if sec else None})
    for w, sec in ours.items():
        rate = K / sec
        rows.append(["ours (extract)", w, K, f"{sec:.2f}", f"{rate:.3f}",
                     f"{rate / peer_rate:.2f}" if peer_rate else "-", ours_at])
    if peer is not None:
        rows.append(["peer-style (ffmpeg JPEG + per-video CLIP/VGGish)", "-", n_peer,
                     f"{peer.total:.2f}", f"{peer_rate:.3f}", "1.00", peer_at])
    best_w = max(ours, key=lambda w: K / ours[w])
    best = K / ours[best_w]
    encode_bound = n_stage / (stages["CLIP"] + stages["VGGish"])
    meta = {
        "device": dev_name, "K": K, "seconds": args.seconds, "size": f"{args.width}x{args.height}",
        "fps": args.fps, "T": args.T, "clip_model": args.clip_model, "batch_size": args.batch_size,
        "cpu_cores": os.cpu_count(), "usable_cores": usable_cores(), "videos_made_now": made,
        "make_videos_s": round(t_make, 2), "model_build_s": round(t_models, 3),
        "worker_start_s": round(t_workers, 3), "default_workers": default_workers(),
        "default_command": default_cmd, "default_extract_s": default_s,
        "default_extract_videos_per_s": default_rate, "peer_videos": n_peer,
        **variant_meta,
        "default_compute_precision": default_at,
        "ours_compute_precision": ours_at, "peer_compute_precision": peer_at if peer else None,
        "best_workers": best_w, "ours_videos_per_s": best,
        "peer_videos_per_s": peer_rate, "peer_extract_videos_per_s": peer_rate,
        "ratio": best / peer_rate if peer_rate else None,
        "default_ratio": default_rate / peer_rate if peer_rate and default_rate else None,
        "decode_s_per_video": stages["decode"] / n_stage,
        "decord_bare_s_per_video": {k: v / n_stage for k, v in bare.items()},
        "decode_vs_decord_bare": decode_vs_bare,
        "ours_read_audio_s_per_video": t_read_audio / n_stage,
        "encode_bound_videos_per_s": encode_bound,
        "stages": {"title": stage_title, "columns": stage_cols, "rows": stage_rows},
        "goal": "default command >= 12 videos/s and >= 10x peer-style on the 16-core GPU machine; "
                ">= 1.2x peer-style on the 2-core CPU machine; decode <= 1.5x decord alone",
    }
    print_table(f"Extraction throughput - {K} videos x {args.seconds:g} s {args.width}x{args.height} "
                f"{args.fps:g} fps, T={args.T}, {args.clip_model} - {dev_name}",
                ["pipeline", "decode workers", "videos", "seconds", "videos/s", "x peer-style",
                 "precision"], rows,
                json_out=args.json, meta=meta)
    if args.json:  # the headline numbers also at the top level of the file
        data = json.loads(Path(args.json).read_text())
        data.update({k: meta[k] for k in ("default_extract_videos_per_s", "peer_extract_videos_per_s",
                                          "default_files_videos_per_s", "default_fp32_videos_per_s",
                                          "ours_videos_per_s", "decode_vs_decord_bare")})
        Path(args.json).write_text(json.dumps(data, indent=1))
    ratio_txt = f", {best / peer_rate:.2f}x peer-style" if peer_rate else ""
    for label, sec, _, at in runs.values():
        dr = f" ({K / sec / peer_rate:.2f}x peer-style)" if peer_rate else ""
        print(f"{label} ({at}): {K / sec:.3f} videos/s{dr}, process start + model load included")
    print(f"best tuned: {best:.3f} videos/s with {best_w} decode workers{ratio_txt}; encoders alone "
          f"(CLIP + VGGish) bound ours at {encode_bound:.3f} videos/s; model build "
          f"{t_models:.2f} s (not in the tuned figures); decode = {decode_vs_bare:.2f}x decord alone")
    return {"rows": rows, "meta": meta}


if __name__ == "__main__":
    main()
