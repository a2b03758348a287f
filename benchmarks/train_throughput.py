"""Training throughput: QA/s of fwd + bwd + optimizer for SHMamba on one device, data included,
our path vs a peer-style path in the same run, and the FLOP floor of an epoch.

    python benchmarks/train_throughput.py STORE/feats.h5 [--batch-sizes 256 1024 4096]
        [--steps 30] [--compile graph|all|none] [--peer-workers 8] [--peak-tflops 989] [--json out.json]

* ours: ``train.data.StoreData`` (the split's videos and questions resident on the device, a
  batch is an index gather; the model runs each distinct video of a batch once,
  ``video_index``), bf16 autocast on CUDA (``--amp``), AdamW (+ RiemannianAdam) as
  ``train.loop`` builds them, grad clipping; one row per ``--batch-sizes`` entry;
  ``--compile`` says where the model is ``torch.compile``-d: nowhere (default, as ``train``
  does), in the CUDA-graph step, or everywhere; the peer-style path is never compiled.
* peer-style (``peer_style.py``): the split exported to one float32 ``.npy`` per video per
  feature and one per question (export time reported, not counted), a ``DataLoader``
  (``--peer-batch`` 64, ``--peer-workers`` 8, shuffle, pinned memory on CUDA) that ``np.load``s
  every sample, the same model with one video per question (``video_index=None``, no dedup),
  same precision as ours unless ``--peer-amp off``.
* Each path runs ``--warmup`` steps, then ``--steps`` timed steps (synchronised); QA/s counts
  questions seen.  Epoch time = ``--epoch-size`` (MUSIC-AVQA train: 31,927) / QA/s.
* FLOP floor: model FLOPs of fwd + bwd (``torch.utils.flop_counter.FlopCounterMode`` on a
  mambapy copy of the model on the CPU, split into per-video, per-video-pair and per-question
  parts, plus the selective scan's ~9 T d_inner d_state per sequence and layer (x3 for
  fwd + bwd), which runs as elementwise ops the counter does not see), applied to the videos and
  questions each path actually ran in its timed steps, scaled to one epoch, divided by
  ``--peak-tflops`` (bf16 dense; H100 SXM 989).  Elementwise work (norms, activations, the
  hyperbolic alignment's [V, V, d] distance tensors) is not counted: the floor is a lower bound.
* Peak GiB (CUDA): ``torch.cuda.max_memory_allocated`` over the row, resident data included.
  A batch size that runs out of memory gives an ``OOM`` row.

CPU smoke run: ``--batch-sizes 16 32 --steps 2 --warmup 1 --peer-workers 0 --model d_model=16``.
"""
from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from benchlib import (device_name, pick_device, print_table, refuse_compile_with_autocast,  # noqa: E402
                      sync)  # (adds repo to path)

MUSIC_AVQA_TRAIN = 31927


def model_config_for_store(store, variant: str, overrides: dict):
    """The variant's SHMambaConfig with the store's dims (as ``train.loop`` builds it)."""
    from train.data import store_dims
    from train.loop import model_config_for

    return model_config_for(variant, overrides, store_dims(store), str(store.path))


def parse_model_overrides(items: list[str] | None) -> dict:
    """``--model d_model=64 n_layers=2`` -> SHMambaConfig overrides (values parsed as JSON)."""
    from common.config import parse_set_options

    return parse_set_options(items)


def amp_ctx(device: torch.device, amp: str):
    """bf16 autocast (``auto``: on CUDA only; ``bf16``: anywhere), else nothing."""
    from train.step import graph_autocast as amp_context

    return amp_context(device, amp)


# ---- FLOPs ----------------------------------------------------------------------------------


def scan_flops_per_video(cfg, T: int) -> float:
    """Selective scan FLOPs per video, fwd + bwd: ~9 T d_inner d_state per sequence and layer
    (Gu & Dao 2023), two sequences (audio, visual), bwd ~ 2x fwd."""
    if cfg.temporal != "mamba":
        return 0.0
    return 3 * 2 * cfg.n_layers * 9 * T * cfg.expand * cfg.d_model * cfg.d_state


def model_flops(cfg, T: int, n: int = 2) -> tuple[float, float, float]:
    """(FLOPs per distinct video, per pair of videos, per question) of one fwd + bwd step.

    Counted with ``FlopCounterMode`` on a CPU mambapy copy of the model at (V, B) = (n, n),
    (n, 2n) and (2n, 2n): a step costs ``V * per_video + V**2 * per_pair + B * per_question``
    (the V x V term is the alignment loss's similarity matmuls).  ``per_video`` includes
    :func:`scan_flops_per_video`, which the counter does not see.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from model import build_model

    cfg = replace(cfg, backend="mambapy", dropout=0.0)
    model = build_model(cfg, seed=0)
    gen = torch.Generator().manual_seed(0)

    def count(V: int, B: int) -> int:
        audio = torch.randn(V, T, cfg.audio_dim, generator=gen)
        visual = torch.randn(V, T, cfg.visual_dim, generator=gen)
        question = torch.randn(B, cfg.text_dim, generator=gen)
        index = None if B == V else torch.arange(B) % V
        options = torch.randn(B, cfg.n_options, cfg.text_dim, generator=gen) if cfg.n_options else None
        with FlopCounterMode(display=False) as fc:
            out = model(audio, visual, question, video_index=index, options=options)
            target = torch.zeros(B, dtype=torch.long)
            (F.cross_entropy(out.logits.float(), target) + out.align_loss).backward()
        model.zero_grad(set_to_none=True)
        return fc.get_total_flops()

    f1, f2, f3 = count(n, n), count(n, 2 * n), count(2 * n, 2 * n)
    per_q = (f2 - f1) / n
    per_pair = (f3 - 2 * f1) / (2 * n * n)
    per_v = (f1 - per_q * n - per_pair * n * n) / n
    return per_v + scan_flops_per_video(cfg, T), per_pair, per_q


def step_flops(flops: tuple[float, float, float], videos: float, video_pairs: float,
               questions: float) -> float:
    """FLOPs of steps that together ran ``videos`` videos, ``video_pairs`` = sum of V**2 and
    ``questions`` questions (``flops`` from :func:`model_flops`)."""
    per_v, per_pair, per_q = flops
    return videos * per_v + video_pairs * per_pair + questions * per_q


# ---- our path -------------------------------------------------------------------------------


def batch_index_lists(data, split: str, batch_size: int, count: int, seed: int = 0,
                      sampler: str = "question") -> list:
    """``count`` batches of question positions, epoch after epoch (a fresh seeded order each
    epoch): ``question`` = shuffled questions, ``video`` = video-grouped (train's
    ``sampler='video'``: each video's questions consecutive)."""
    from train.data import batch_indices, epoch_order, video_grouped_order

    gen = torch.Generator().manual_seed(seed)
    info = data.splits[split]
    out: list = []
    while len(out) < count:
        order = video_grouped_order(info.video_local, gen) if sampler == "video" \
            else epoch_order(len(info), gen)
        out += [b.numpy() for b in batch_indices(order, batch_size)]
    return out[:count]


def train_step(model, optimizers, autocast, audio, visual, question, answer, video_index=None,
               tokens=None, token_mask=None, options=None, align_weight: float = 0.1,
               grad_clip: float = 1.0) -> None:
    """One fwd + bwd + optimizer step, the way ``train.loop`` takes it."""
    with autocast():
        out = model(audio, visual, question, tokens=tokens, token_mask=token_mask,
                    video_index=video_index, options=options)
    loss = F.cross_entropy(out.logits.float(), answer, ignore_index=-1) \
        + align_weight * out.align_loss.float()
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    for o in optimizers:
        o.step()
    for o in optimizers:
        o.zero_grad(set_to_none=True)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def new_model(model_cfg, device, args, compile: bool = False):
    from model import build_model
    from train.config import TrainConfig
    from train.optim import make_optimizers

    model = build_model(model_cfg, seed=0).to(device).train()
    opts = make_optimizers(model, TrainConfig(lr=args.lr))
    run = torch.compile(model) if compile else model
    return model, run, opts


def our_step(data, model_cfg, device, args, idx: list, graph: bool = False):
    """A fresh model and the training step ``train.loop`` runs (``train.step``: the eager step,
    or with ``graph`` the CUDA-graph step) over the batches ``idx``; returns ``step(k)`` that
    runs batch k and returns (questions, distinct videos) of it."""
    from train.step import EagerStep, GraphStep, StepSettings, pack_plans, plans_shape

    model, run, opts = new_model(model_cfg, device, args, compile=args.compile == "all" and not graph)
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1.0) for o in opts]
    settings = StepSettings(args.align_weight, args.grad_clip, 0.0)
    autocast = amp_ctx(device, args.amp)
    answers = data.splits[args.split].answer
    scales = [(1.0 / max(1, int((answers[i] >= 0).sum())), 1.0) for i in idx]
    if graph:
        step_fn = GraphStep(model, opts, scheds, settings, autocast, data, args.split,
                            compile={"none": False, "regions": "regions"}.get(args.compile, True))
        plans_np = [data.plan(args.split, i) for i in idx]
        shape = step_fn.prepare(plans_shape(plans_np, max(len(i) for i in idx)))
        plans = torch.from_numpy(pack_plans(plans_np, shape)).to(device)
        dev_scales = torch.tensor(scales, dtype=torch.float32, device=device)
        n_videos = [len(p["videos"]) for p in plans_np]

        def step(k):
            step_fn(plans[k], dev_scales[k])
            return len(idx[k]), int(n_videos[k])
        return step
    step_fn = EagerStep(model, run, opts, scheds, settings, autocast, device)
    batches = data.batches(args.split, idx)

    def step(k):
        b = next(batches)
        step_fn(b, *scales[k])
        return len(b), len(b.audio)
    return step


def time_ours(data, model_cfg, batch_size: int, device, args, sampler: str = "question",
              graph: bool = False) -> dict:
    """QA/s and videos per question of :func:`our_step` at one batch size; the capture of the
    graph step is not timed."""
    reset_peak(device)
    warmup = max(args.warmup, 4) if graph else args.warmup  # GraphStep: 3 eager steps, capture
    idx = batch_index_lists(data, args.split, batch_size, warmup + args.steps, args.seed, sampler)
    step = our_step(data, model_cfg, device, args, idx, graph)
    for k in range(warmup):
        step(k)
    sync(device)
    t = time.perf_counter()
    qa = vids = pairs = 0
    for k in range(warmup, warmup + args.steps):
        q, v = step(k)
        qa, vids, pairs = qa + q, vids + v, pairs + v * v
    sync(device)
    dt = time.perf_counter() - t
    del step
    return {"seconds": dt, "qa": qa, "videos": vids, "video_pairs": pairs, "peak_gib": peak_gib(device)}


def time_default_command(store: str, epochs: int, device: torch.device) -> dict | None:
    """``python cli.py train --store STORE`` as a user types it, stopped after N epochs
    (``stop_after``, so the run keeps its default length, which ``compile = "auto"`` looks at), in
    a subprocess: QA/s and time of its last epoch (validation included) from metrics.jsonl, and
    the whole command's wall time (process start, data load, capture included)."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = Path(tempfile.mkdtemp(prefix="default-train-"))
    cmd = [sys.executable, str(root / "cli.py"), "train", "--store", str(store), "--set",
           f"stop_after={epochs}", "--out", str(out), "--name", "run"]
    if device.type == "cpu":
        cmd += ["--device", "cpu"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    wall = time.perf_counter() - t
    try:
        if proc.returncode != 0:
            print(f"default command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
            return None
        rows = [json.loads(x) for x in (out / "run" / "metrics.jsonl").read_text().splitlines()]
        log = (out / "run" / "train.log").read_text()
        step_line = next((ln.split("training step: ", 1)[1] for ln in log.splitlines()
                          if "training step: " in ln), "?")
        return {"command": " ".join(cmd[1:]), "wall_s": wall, "epochs": rows, "step": step_line,
                "qa_per_s": rows[-1]["qa_per_s"], "epoch_s": rows[-1]["time"]}
    finally:
        shutil.rmtree(out, ignore_errors=True)


# ---- peer-style path ------------------------------------------------------------------------


def peer_model_config(model_cfg, backend: str):
    """The model of the peer-style path: ours, on the Mamba kernel the published code uses
    (``mamba-ssm`` where it imports; ``same`` = our default backend)."""
    from model import resolve_backend

    if backend == "same" or model_cfg.temporal != "mamba":
        return model_cfg
    try:
        resolve_backend(backend, model_cfg.d_state, model_cfg.d_conv)
    except RuntimeError:
        return model_cfg  # not available here (CPU, or no mamba_ssm): our default backend
    return replace(model_cfg, backend=backend)


def time_peer(export_dir: Path, model_cfg, device, args) -> dict:
    from peer_style import peer_loader

    reset_peak(device)
    model, run, opts = new_model(peer_model_config(model_cfg, args.peer_backend), device, args)
    autocast = amp_ctx(device, args.amp if args.peer_amp == "same" else "off")
    loader = peer_loader(export_dir, args.peer_batch, args.peer_workers,
                         pin_memory=device.type == "cuda", seed=args.seed)

    def endless():
        while True:
            yield from loader

    it = endless()

    def step(b):
        to = lambda x: x.to(device, non_blocking=True)  # noqa: E731
        train_step(run, opts, autocast, to(b["audio"]), to(b["visual"]), to(b["question"]),
                   to(b["answer"]), None, align_weight=args.align_weight, grad_clip=args.grad_clip)
        return len(b["answer"])

    for _ in range(args.warmup):
        step(next(it))
    sync(device)
    t = time.perf_counter()
    sizes = [step(next(it)) for _ in range(args.peer_steps or args.steps)]
    sync(device)
    dt = time.perf_counter() - t
    del it, loader
    return {"seconds": dt, "qa": sum(sizes), "videos": sum(sizes),
            "video_pairs": sum(b * b for b in sizes), "peak_gib": peak_gib(device)}


# ---- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store", help="feature store entry file (e.g. made by make_store.py)")
    ap.add_argument("--split", default="train", help="split to train on")
    ap.add_argument("--variant", default="shmamba", help="model variant (model.VARIANTS)")
    ap.add_argument("--model", nargs="*", default=[], metavar="KEY=VALUE",
                    help="SHMambaConfig overrides, e.g. d_model=64 backend=mambapy")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024, 4096],
                    help="our path: questions per batch, one row each")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per row")
    ap.add_argument("--samplers", nargs="+", choices=["question", "video"], default=["question"],
                    help="batch orders of our path, one set of rows each: 'question' (shuffled "
                         "questions) and/or 'video' (video-grouped, train's sampler='video')")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    ap.add_argument("--step", nargs="+", choices=["eager", "graph"], default=None,
                    help="training step of our rows (default: both on CUDA, eager on CPU)")
    ap.add_argument("--default-epochs", type=int, default=2,
                    help="also time `python cli.py train --store STORE --set stop_after=N` (the "
                         "defaults, stopped after N epochs; 0 = skip); its row shows the last "
                         "epoch, validation included")
    ap.add_argument("--compile", default="none", choices=["graph", "all", "regions", "none"],
                    help="torch.compile the model: in the CUDA-graph step (graph: as `train --set "
                         "compile=true`), in the eager step too (all), or nowhere (none: as `train` "
                         "by default); never in the peer-style path.  Needs --amp off")
    ap.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"],
                    help="auto = bf16 autocast on CUDA, none on CPU")
    ap.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate")
    ap.add_argument("--align-weight", type=float, default=0.1, help="lambda of the alignment loss")
    ap.add_argument("--grad-clip", type=float, default=1.0, help="max grad norm (0 = off)")
    ap.add_argument("--peer-batch", type=int, default=64, help="peer-style batch size")
    ap.add_argument("--peer-workers", type=int, default=8, help="peer-style DataLoader workers")
    ap.add_argument("--peer-steps", type=int, default=100,
                    help="timed peer-style steps (0 = same as --steps)")
    ap.add_argument("--peer-amp", default="same", choices=["same", "off"],
                    help="peer-style precision: same as ours, or float32 as the peers train")
    ap.add_argument("--peer-backend", default="mamba-ssm",
                    help="Mamba backend of the peer-style model: mamba-ssm (the published kernel, "
                         "when it imports) or 'same' (ours)")
    ap.add_argument("--skip-peer", action="store_true", help="do not time the peer-style path")
    ap.add_argument("--export-dir", default=None,
                    help="folder for the peer-style .npy export (default: a temp folder, removed)")
    ap.add_argument("--epoch-size", type=int, default=MUSIC_AVQA_TRAIN,
                    help="questions per epoch for the epoch-time column (MUSIC-AVQA train)")
    ap.add_argument("--peak-tflops", type=float, default=989.0,
                    help="peak dense bf16 TFLOP/s of the card for the FLOP floor (H100 SXM: 989)")
    ap.add_argument("--memory-budget-mb", type=float, default=0.0,
                    help="device memory for resident data (0 = half of what is free)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--seed", type=int, default=0, help="data order and model init seed")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--json", default=None, help="write the results as JSON to this file")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from model import resolve_backend
    from train.data import StoreData, open_store

    device = pick_device(args.device)
    refuse_compile_with_autocast(ap, args.compile, args.amp, device)
    dev_name = device_name(device)
    store = open_store(args.store)
    model_cfg = model_config_for_store(store, args.variant, parse_model_overrides(args.model))
    T = int(store.attrs["T"])

    t = time.perf_counter()
    data = StoreData(store, [args.split], device, with_tokens=bool(model_cfg.use_tokens),
                     memory_budget_mb=args.memory_budget_mb)
    sync(device)
    t_load = time.perf_counter() - t
    n_split = len(data.splits[args.split])

    flops = model_flops(model_cfg, T)
    peak = args.peak_tflops * 1e12

    entries: list[tuple[str, int, dict | None, str]] = []
    modes = args.step or (["eager", "graph"] if device.type == "cuda" else ["eager"])
    for mode in modes:
        for sampler in args.samplers:
            for bs in args.batch_sizes:
                try:
                    r = time_ours(data, model_cfg, bs, device, args, sampler=sampler,
                                  graph=mode == "graph")
                except torch.OutOfMemoryError:
                    r = None
                if r is None and device.type == "cuda":  # free what the failed step held
                    gc.collect()
                    torch.cuda.empty_cache()
                note = "" if bs <= n_split else f"split has {n_split} questions: batches of {n_split}"
                label = f"ours, {'CUDA-graph' if mode == 'graph' else 'eager'} step" \
                    + (", video-grouped" if sampler == "video" else "")
                entries.append((label, bs, r, note))
    default = time_default_command(args.store, args.default_epochs, device) \
        if args.default_epochs else None

    peer = None
    export_info: dict = {}
    if not args.skip_peer:
        from peer_style import export_npy

        export_dir = Path(args.export_dir) if args.export_dir else \
            Path(tempfile.mkdtemp(prefix="peer-npy-"))
        try:
            t = time.perf_counter()
            export_info = export_npy(store, args.split, export_dir)
            export_info["seconds"] = round(time.perf_counter() - t, 2)
            peer = time_peer(export_dir, model_cfg, device, args)
        finally:
            if not args.export_dir:
                shutil.rmtree(export_dir, ignore_errors=True)
        peer_backend = resolve_backend(peer_model_config(model_cfg, args.peer_backend).backend,
                                       model_cfg.d_state, model_cfg.d_conv)[0] \
            if model_cfg.temporal == "mamba" else "-"
        entries.append((f"peer-style (.npy + DataLoader, {args.peer_workers} workers, {peer_backend})",
                        args.peer_batch, peer, "fp32" if args.peer_amp == "off" else ""))

    def rate(r: dict | None) -> float | None:
        return None if r is None else r["qa"] / r["seconds"]

    peer_qa_s = rate(peer)
    rows = []
    for name, bs, r, note in entries:
        if r is None:
            rows.append([name, bs, "OOM", "-", "-", "-", "-", "-", "-", note])
            continue
        qa_s = rate(r)
        epoch_s = args.epoch_size / qa_s
        v_per_q = r["videos"] / r["qa"]
        floor_s = step_flops(flops, r["videos"], r["video_pairs"], r["qa"]) \
            * (args.epoch_size / r["qa"]) / peak
        rows.append([name, bs, f"{qa_s:,.0f}", f"{epoch_s:.3f}", f"{v_per_q:.3f}", f"{floor_s:.4f}",
                     f"{epoch_s / floor_s:.1f}",
                     f"{qa_s / peer_qa_s:.2f}" if peer_qa_s else "-",
                     "-" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}", note])
    if default is not None:
        compiled = "compile" in default["step"] and "not compiled" not in default["step"]
        step = default["step"].split(" (")[0] + (", compiled" if compiled else "")
        rows.append([f"python cli.py train (defaults; step: {step})", 64,
                     f"{default['qa_per_s']:,.0f}", f"{default['epoch_s']:.3f} (with val)", "-", "-",
                     "-", f"{default['qa_per_s'] / peer_qa_s:.2f}" if peer_qa_s else "-", "-",
                     f"whole command {default['wall_s']:.1f} s for {args.default_epochs} epochs, "
                     f"first epoch {default['epochs'][0]['time']:.1f} s"])
    ours_ok = [(bs, rate(r)) for name, bs, r, _ in entries if r is not None and name.startswith("ours")]
    best_bs, best_qa_s = max(ours_ok, key=lambda x: x[1]) if ours_ok else (None, None)

    cols = ["path", "batch", "QA/s", f"epoch s ({args.epoch_size:,} QA)", "videos/QA",
            "FLOP floor s/epoch", "measured/floor", "x peer-style", "peak GiB", "note"]
    meta = {
        "device": dev_name, "store": str(args.store), "split": args.split, "split_questions": n_split,
        "T": T, "variant": args.variant, "model": model_cfg.to_dict(), "amp": args.amp,
        "compile": args.compile, "steps": args.steps, "warmup": args.warmup,
        "backend": resolve_backend(model_cfg.backend, model_cfg.d_state, model_cfg.d_conv)[0] if model_cfg.temporal == "mamba" else None,
        "data_load_s": round(t_load, 3), "data_fully_resident": data.fully_resident,
        "flops_per_video": flops[0], "flops_per_video_pair": flops[1],
        "flops_per_question": flops[2], "peak_tflops": args.peak_tflops,
        "peer_export": export_info, "best_batch": best_bs, "best_qa_per_s": best_qa_s,
        "peer_qa_per_s": peer_qa_s, "ratio": best_qa_s / peer_qa_s if best_qa_s and peer_qa_s else None,
        "default_command": default,
        "default_train_qa_per_s": default["qa_per_s"] if default else None,
        "peer_train_qa_per_s": peer_qa_s, "best_train_qa_per_s": best_qa_s,
        "best_measured_over_floor": min((float(r[6]) for r in rows if r[0].startswith("ours")
                                         and r[6] not in ("-",)), default=None),
        "goal": "default command >= 10,000 QA/s at batch 64 and >= 8x peer-style; best >= 50,000 "
                "QA/s with measured/floor <= 20 (one H100)",
    }
    print_table(f"Training throughput (fwd+bwd+opt, data included) - {args.variant}, T={T}, "
                f"amp={args.amp}, compile={args.compile} - {dev_name}", cols, rows,
                json_out=args.json, meta=meta)
    if best_qa_s:
        ratio = f", {best_qa_s / peer_qa_s:.1f}x peer-style" if peer_qa_s else ""
        print(f"best: {best_qa_s:,.0f} QA/s (batch {best_bs}){ratio}; one {args.epoch_size:,}-QA epoch "
              f"{args.epoch_size / best_qa_s:.3f} s; data to device {t_load:.2f} s (not counted)")
    return {"rows": rows, "meta": meta}


if __name__ == "__main__":
    main()
