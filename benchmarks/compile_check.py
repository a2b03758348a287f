"""Does ``torch.compile`` give the eager model's gradients, call after call?  The check behind
``TrainConfig.compile`` needing ``amp = off`` (docs/TRAINING.md).

Each round computes the training loss and its gradients on one padded static-shape batch (as the
CUDA-graph step feeds the model) twice, with the plain model and with the compiled one, at the same
weights; then it changes the weights in place, as an optimiser does, and goes on.  A compiled model
that is right agrees with the eager one in every round, within the precision's tolerance.

    python benchmarks/compile_check.py STORE/feats.h5 [--amp bf16|off] [--rounds 6] [--json out.json]

Without a store it writes a small random one (``make_store.py --scale 0.005``).  Exit status 1
when a round disagrees.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

import torch

from benchlib import device_name, pick_device, print_table  # noqa: E402  (adds repo to path)
from train_throughput import model_config_for_store, parse_model_overrides  # noqa: E402

#: relative gradient difference allowed per precision (bf16: the eager step's own run-to-run level
#: is ~5e-3 on an H200; float32: ~1e-6)
TOLERANCE = {"bf16": 5e-2, "off": 1e-4}


def padded_batches(data, batch_size: int, n: int):
    """``n`` (batch, video_mask) pairs of the train split in the graph step's static shape."""
    from train.data import batch_indices, epoch_order
    from train.step import gather_static, pack_plans, plans_shape

    order = epoch_order(len(data.splits["train"]), torch.Generator().manual_seed(0))
    idx = [b.numpy() for b in batch_indices(order, batch_size)][:n]
    plans_np = [data.plan("train", i) for i in idx]
    shape = plans_shape(plans_np, batch_size)
    plans = torch.from_numpy(pack_plans(plans_np, shape)).to(data.device)
    return [gather_static(data, "train", plans[k], shape) for k in range(len(idx))]


def loss_grads(model, run, batch, video_mask, amp: str) -> tuple[float, list[torch.Tensor]]:
    """The training step's loss and the gradient of every parameter (float32)."""
    from train.step import StepSettings, forward, graph_autocast, loss_and_metrics

    with graph_autocast(batch.audio.device, amp)():
        out = forward(run, batch, video_mask)
    scales = torch.tensor([1.0 / len(batch.answer), 1.0], device=batch.audio.device)
    n_videos = video_mask.sum().double() if video_mask is not None else float(len(batch.audio))
    loss, _ = loss_and_metrics(out, batch.answer, n_videos, scales,
                               StepSettings(0.1, 1.0, 0.0))
    loss.backward()
    grads = [p.grad.float() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    return float(loss.detach()), grads


def relative_diff(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got - ref).norm() / ref.norm().clamp_min(1e-30))


def worst_parameter(model, got: list[torch.Tensor], ref: list[torch.Tensor]) -> str:
    rel, name = max((relative_diff(g, r), n) for (n, _), g, r in zip(model.named_parameters(), got, ref))
    return f"{name} ({rel:.1e})"


@contextlib.contextmanager
def compiled(model, parts: dict):
    """The model with the submodules named in ``parts`` replaced by their compiled forms."""
    plain = {name: getattr(model, name) for name in parts}
    try:
        for name, module in parts.items():
            setattr(model, name, module)
        yield model
    finally:
        for name, module in plain.items():
            setattr(model, name, module)


def compiled_part(model, part: str, backend: str, options: dict | None):
    """Child ``NAME`` of the model compiled as ``compile = "regions"`` compiles it (through the
    methods the model calls, where COMPILE_REGIONS names them); ``NAME:METHOD``: that method only."""
    from train.step import COMPILE_REGIONS, compiled_view

    name, _, method = part.partition(":")
    methods = [method] if method else [r.partition(".")[2] for r in COMPILE_REGIONS
                                       if r.startswith(name + ".")]
    names = [f"{name}.{m}" for m in methods] or [name]
    return getattr(compiled_view(model, names, backend, options or None), name)


def check(model, batches, amp: str, rounds: int, backend="inductor", part: str = "all",
          use_mask: bool = True, options: dict | None = None, vs_fp32: bool = False) -> list[dict]:
    """One row per round: losses, relative gradient difference, the worst parameter.  ``part``:
    the whole model ("all") or one child module compiled; ``use_mask``: the padded videos masked
    out of the alignment loss (as the graph step does) or not; ``options``: inductor's;
    ``vs_fp32``: also each side's distance from the float32 eager gradients (which side is off)."""
    from train.step import compiled_model

    whole = part in ("all", "regions")  # as train compiles: the model whole, or its regions
    run = compiled_model(model, "model" if part == "all" else "regions", backend, options) \
        if whole else model
    name = part.split(":")[0]
    parts = {} if whole else {name: compiled_part(model, part, backend, options)}
    rows = []
    for r in range(rounds):
        batch, mask = batches[r % len(batches)]
        mask = mask if use_mask else None
        le, ge = loss_grads(model, model, batch, mask, amp)
        with compiled(model, parts):
            lc, gc = loss_grads(model, run, batch, mask, amp)
        flat_e, flat_c = (torch.cat([g.flatten() for g in gs]) for gs in (ge, gc))
        rows.append({"round": r + 1, "loss_eager": le, "loss_compiled": lc,
                     "grad_rel_diff": relative_diff(flat_c, flat_e),
                     "worst": worst_parameter(model, gc, ge)})
        if vs_fp32:
            flat = torch.cat([g.flatten() for g in loss_grads(model, model, batch, mask, "off")[1]])
            rows[-1]["eager_vs_fp32"] = relative_diff(flat_e, flat)
            rows[-1]["compiled_vs_fp32"] = relative_diff(flat_c, flat)
        with torch.no_grad():  # an in-place update of every weight, as the optimiser makes
            for p, g in zip(model.parameters(), ge):
                p.sub_(1e-3 * torch.sign(g).to(p.dtype))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store", nargs="?", help="feature store (default: a small random one)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--amp", default="bf16", choices=["bf16", "off"])
    ap.add_argument("--backend", default="inductor", help="torch.compile backend")
    ap.add_argument("--mamba-backend", default="auto", help="the model's Mamba backend")
    ap.add_argument("--model", nargs="*", help="model overrides, e.g. d_model=64 n_layers=1")
    ap.add_argument("--part", default="all",
                    help="compile only this child module of the model (audio_enc, align, temporal, "
                         "fusion, head, ...; fusion:per_question: one method of it), 'regions' "
                         "(train.step.COMPILE_REGIONS, each compiled on its own) or 'all' "
                         "(default: the whole model)")
    ap.add_argument("--no-mask", action="store_true",
                    help="leave the padded videos in the alignment loss (bisecting)")
    ap.add_argument("--option", nargs="*", default=[],
                    help="inductor options over train's (train.step.COMPILE_OPTIONS), e.g. "
                         "triton.mix_order_reduction=true")
    ap.add_argument("--vs-fp32", action="store_true",
                    help="also compare both sides with the float32 eager gradients")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--json", help="write the table here")
    args = ap.parse_args(argv)
    device = pick_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_check(args, device, args.store or make_small_store(Path(tmp)))
    tol = TOLERANCE[args.amp]
    bad = [r for r in rows if not r["grad_rel_diff"] <= tol]
    what = "" if args.part == "all" else f" of {args.part}"
    print_table(f"torch.compile{what} ({args.backend}) vs eager, amp={args.amp}"
                f"{', no mask' if args.no_mask else ''}, torch {torch.__version__} "
                f"- {device_name(device)}", ["round", "loss eager", "loss compiled",
                                             "grad rel diff", "worst parameter",
                                             *(["eager vs fp32", "compiled vs fp32"] * args.vs_fp32)],
                [[r["round"], f"{r['loss_eager']:.4f}", f"{r['loss_compiled']:.4f}",
                  f"{r['grad_rel_diff']:.2e}", r["worst"],
                  *(f"{r[k]:.2e}" for k in ("eager_vs_fp32", "compiled_vs_fp32") if k in r)]
                 for r in rows], args.json)
    print(f"{'DISAGREE' if bad else 'agree'}: {len(bad)} of {len(rows)} rounds above {tol:g}")
    return 1 if bad else 0


def make_small_store(folder: Path) -> str:
    import make_store

    out = folder / "feats.h5"
    make_store.main(["--out", str(out), "--scale", "0.005"])
    return str(out)


def run_check(args, device, store_path: str) -> list[dict]:
    from model import build_model
    from train.step import COMPILE_OPTIONS
    from store.reader import FeatureStore
    from train import StoreData

    with FeatureStore(store_path) as store:
        data = StoreData(store, ["train"], device, with_tokens=False)
        cfg = model_config_for_store(store, "shmamba", {"dropout": 0.0, "backend": args.mamba_backend,
                                                       **parse_model_overrides(args.model)})
        model = build_model(cfg, seed=0).to(device)
        children = [n for n, _ in model.named_children()]
        if args.part.split(":")[0] not in ("all", "regions", *children):
            raise SystemExit(f"compile_check: --part must be 'all', 'regions' or one of {children}")
        batches = padded_batches(data, args.batch_size, max(1, min(args.rounds, 4)))
        options = {**COMPILE_OPTIONS, **parse_model_overrides(args.option)} \
            if args.backend == "inductor" else None
        print(f"inductor options: {options}")
        return check(model, batches, args.amp, args.rounds, args.backend, args.part,
                     not args.no_mask, options, args.vs_fp32)


if __name__ == "__main__":
    sys.exit(main())
