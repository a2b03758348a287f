"""Peer-style pipelines, written the way the published AVQA repositories (AVST, PSTP-Net, TSPM)
do it, so that the benchmark scripts can time them side by side with ours in the same run.

Extraction (used by ``extract_throughput.py``), one video at a time:
  1. ``ffmpeg -i VIDEO -vf fps=1 DIR/%05d.jpg``: one JPEG file per second;
  2. ``ffmpeg -i VIDEO -vn -ac 1 -ar 16000 AUDIO.wav``: the sound track as a 16 kHz wav file;
  3. visual: PIL-load that video's JPEGs, CLIP preprocess each (resize, centre crop, normalise),
     one CLIP forward per video (batch = that video's frames), ``np.save`` one ``.npy``;
  4. audio: ``torchvggish.vggish_input.wavfile_to_examples`` + one VGGish forward per video,
     ``np.save`` one ``.npy``.
  The encoders are handed in (built by our code), so both pipelines use the same model, weights
  and device; only the way the data moves differs, and the precision where the peers' differs:
  ``extract_throughput.py`` hands in float32 encoders on the CPU (OpenAI ``clip.load`` and
  torchvggish run float32 there) and ours, at our precision, on the GPU.

Training (used by ``train_throughput.py``):
  :func:`export_npy` writes one ``.npy`` per video per feature (audio, visual) and one per
  question (sentence embedding), float32, from a feature store; :class:`NpyQADataset` loads them
  per sample with ``np.load`` and a ``torch.utils.data.DataLoader`` batches them (shuffle,
  worker processes, pinned memory on CUDA); the model then runs with one video per question
  (``video_index=None``, no per-video dedup).

The ffmpeg binary is the one ``imageio-ffmpeg`` ships (``pip install imageio-ffmpeg``, in the
``dev`` extra).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


def ffmpeg_exe() -> str | None:
    """Path of an ffmpeg binary: imageio-ffmpeg's, else one on PATH, else None (then the same two
    steps run through PyAV's bundled FFmpeg libraries: same decode work, no CLI)."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return shutil.which("ffmpeg")


def run_ffmpeg(args: list[str], what: str) -> None:
    """Run ffmpeg quietly; a failure raises RuntimeError with ffmpeg's message and ``what``."""
    exe = ffmpeg_exe()
    if exe is None:
        raise RuntimeError("no ffmpeg binary (pip install imageio-ffmpeg)")
    cmd = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed on {what} (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-500:]}")


def extract_jpegs(video: str | Path, out_dir: str | Path, fps: float = 1.0) -> list[Path]:
    """Step 1: ffmpeg to ``fps`` JPEG files per second of ``video``; returns them in order."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if ffmpeg_exe() is None:
        _pyav_jpegs(video, out_dir, fps)
    else:
        run_ffmpeg(["-i", str(video), "-vf", f"fps={fps:g}", "-q:v", "2", str(out_dir / "%05d.jpg")],
                   str(video))
    files = sorted(out_dir.glob("*.jpg"))
    if not files:
        raise RuntimeError(f"ffmpeg wrote no frames for {video}")
    return files


def extract_wav(video: str | Path, out_wav: str | Path, sample_rate: int = 16000) -> Path:
    """Step 2: the sound track as a mono 16-bit wav at ``sample_rate``."""
    out_wav = Path(out_wav)
    out_wav.parent.mkdir(parents=True, exist_ok=True)
    if ffmpeg_exe() is None:
        _pyav_wav(video, out_wav, sample_rate)
    else:
        run_ffmpeg(["-i", str(video), "-vn", "-ac", "1", "-ar", str(sample_rate), "-acodec",
                    "pcm_s16le", str(out_wav)], str(video))
    return out_wav


def _pyav_jpegs(video: str | Path, out_dir: Path, fps: float) -> None:
    """What ``ffmpeg -vf fps=F -q:v 2`` does, through PyAV: decode every frame, keep the first frame
    of each 1/F-second slot, write it as a high-quality JPEG."""
    import av
    from PIL import Image

    n = 0
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if frame.time is None or frame.time < n / fps:
                continue
            n += 1
            Image.fromarray(frame.to_ndarray(format="rgb24")).save(out_dir / f"{n:05d}.jpg", quality=95)


def _pyav_wav(video: str | Path, out_wav: Path, sample_rate: int) -> None:
    """What ``ffmpeg -vn -ac 1 -ar SR -acodec pcm_s16le`` does, through PyAV + soundfile."""
    import av
    import soundfile as sf

    chunks = []
    with av.open(str(video)) as container:
        if not container.streams.audio:
            raise RuntimeError(f"{video}: no audio stream")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        for frame in container.decode(container.streams.audio[0]):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    sf.write(str(out_wav), np.concatenate(chunks) if chunks else np.zeros(0, np.int16), sample_rate,
             subtype="PCM_16")


def fit_length(arr: np.ndarray, T: int) -> np.ndarray:
    """First ``T`` rows, padded by repeating the last row (the MUSIC-AVQA convention)."""
    if len(arr) >= T:
        return arr[:T]
    return np.concatenate([arr, np.repeat(arr[-1:], T - len(arr), axis=0)])


def clip_preprocess(clip_encoder: Any):
    """open_clip's eval transform (resize short side, centre crop, normalise) for the encoder's
    model, with its own mean/std: what ``open_clip.create_model_and_transforms`` returns."""
    import open_clip

    model = clip_encoder.model
    pp = getattr(model.visual, "preprocess_cfg", {}) or {}
    return open_clip.image_transform(clip_encoder.image_size, is_train=False,
                                     mean=pp.get("mean"), std=pp.get("std"),
                                     interpolation=pp.get("interpolation"),
                                     resize_mode=pp.get("resize_mode"))


@dataclass
class PeerExtractTimes:
    """Seconds spent per stage over all videos of one peer-style extraction."""

    ffmpeg_frames: float = 0.0
    ffmpeg_audio: float = 0.0
    clip: float = 0.0       # PIL load + preprocess + CLIP forward
    vggish: float = 0.0     # wav -> log-mel examples + VGGish forward
    write: float = 0.0      # np.save
    videos: int = 0
    per_video: list[float] = field(default_factory=list)

    @property
    def total(self) -> float:
        return self.ffmpeg_frames + self.ffmpeg_audio + self.clip + self.vggish + self.write


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def peer_extract_video(video: str | Path, work_dir: str | Path, out_dir: str | Path, clip_encoder: Any,
                       vggish_encoder: Any, T: int, preprocess=None,
                       times: PeerExtractTimes | None = None) -> tuple[Path, Path]:
    """Peer-style extraction of one video (steps 1-4 of the module doc); returns the two .npy
    paths (visual [T, Dv], audio [T, 128], float32)."""
    from PIL import Image
    from torchvggish.vggish_input import wavfile_to_examples

    times = times if times is not None else PeerExtractTimes()
    preprocess = preprocess or clip_preprocess(clip_encoder)
    video = Path(video)
    stem = video.stem
    work_dir, out_dir = Path(work_dir), Path(out_dir)
    device = clip_encoder.device
    t_start = t = time.perf_counter()

    jpgs = extract_jpegs(video, work_dir / "frames" / stem)
    t1 = time.perf_counter()
    times.ffmpeg_frames += t1 - t
    wav = extract_wav(video, work_dir / "audio" / f"{stem}.wav")
    t2 = time.perf_counter()
    times.ffmpeg_audio += t2 - t1

    images = [preprocess(Image.open(p).convert("RGB")) for p in jpgs[:T]]
    pixels = torch.stack(images).to(device, clip_encoder.dtype)  # the handed-in encoders' precision
    with clip_encoder.autocast():
        visual = clip_encoder.model.encode_image(pixels)
    visual = fit_length(visual.float().cpu().numpy(), T)
    _sync(device)
    t3 = time.perf_counter()
    times.clip += t3 - t2

    examples = wavfile_to_examples(str(wav))  # [n, 1, 96, 64] float tensor
    if examples.ndim == 3:
        examples = examples[:, None]
    with vggish_encoder.autocast():
        audio = vggish_encoder.model(examples.to(device, vggish_encoder.dtype))
    audio = fit_length(audio.float().cpu().numpy().reshape(-1, 128), T)
    _sync(device)
    t4 = time.perf_counter()
    times.vggish += t4 - t3

    (out_dir / "visual").mkdir(parents=True, exist_ok=True)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    vpath, apath = out_dir / "visual" / f"{stem}.npy", out_dir / "audio" / f"{stem}.npy"
    np.save(vpath, visual.astype(np.float32))
    np.save(apath, audio.astype(np.float32))
    t5 = time.perf_counter()
    times.write += t5 - t4
    times.videos += 1
    times.per_video.append(t5 - t_start)
    return vpath, apath


def peer_extract(videos: list[str | Path], work_dir: str | Path, out_dir: str | Path, clip_encoder: Any,
                 vggish_encoder: Any, T: int) -> PeerExtractTimes:
    """Peer-style extraction of ``videos``, one after the other."""
    times = PeerExtractTimes()
    preprocess = clip_preprocess(clip_encoder)
    for v in videos:
        peer_extract_video(v, work_dir, out_dir, clip_encoder, vggish_encoder, T, preprocess, times)
    return times


# ---- training data, peer style ---------------------------------------------------------------


def export_npy(store: Any, split: str, out_dir: str | Path) -> dict:
    """Write ``split`` of ``store`` as peers keep their features: ``audio/<video>.npy`` [T, A],
    ``visual/<video>.npy`` [T, Dv], ``question/<qid>.npy`` [Dt] (float32), and ``index.json``
    (one record per question: question_id, video_id, answer).  Questions whose video is not in
    the store are left out.  Returns counts."""
    out_dir = Path(out_dir)
    for sub in ("audio", "visual", "question"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    rows = np.asarray(store.split_rows(split), dtype=np.int64)
    if rows.size == 0:
        raise ValueError(f"store {store.path}: split {split!r} has no questions")
    vrow = np.asarray(store.question_video_row, dtype=np.int64)[rows]
    keep = vrow >= 0
    rows, vrow = rows[keep], vrow[keep]
    video_rows = np.unique(vrow)
    vids = np.asarray(store.video_ids)
    for lo in range(0, len(video_rows), 256):  # bounded memory for large stores
        chunk = video_rows[lo:lo + 256]
        audio = store.videos("audio", rows=chunk)
        visual = store.videos("visual", rows=chunk)
        for i, r in enumerate(chunk):
            np.save(out_dir / "audio" / f"{vids[r]}.npy", np.asarray(audio[i], np.float32))
            np.save(out_dir / "visual" / f"{vids[r]}.npy", np.asarray(visual[i], np.float32))
    qids = np.asarray(store.question_ids)[rows]
    answers = np.asarray(store.questions("answer", rows=rows), dtype=np.int64)
    records = []
    for lo in range(0, len(rows), 4096):
        sent = store.questions("sentence", rows=rows[lo:lo + 4096])
        for i in range(len(sent)):
            q = int(qids[lo + i])
            np.save(out_dir / "question" / f"{q}.npy", np.asarray(sent[i], np.float32))
            records.append({"question_id": q, "video_id": str(vids[vrow[lo + i]]),
                            "answer": int(answers[lo + i])})
    (out_dir / "index.json").write_text(json.dumps(records))
    return {"videos": int(len(video_rows)), "questions": int(len(records))}


class NpyQADataset(torch.utils.data.Dataset):
    """One question per item, its features ``np.load``-ed from the exported files every time."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        index = self.root / "index.json"
        if not index.is_file():
            raise FileNotFoundError(f"{index}: not an export of export_npy (no index.json)")
        self.records = json.loads(index.read_text())

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        r = self.records[i]
        return {
            "audio": torch.from_numpy(np.load(self.root / "audio" / f"{r['video_id']}.npy")),
            "visual": torch.from_numpy(np.load(self.root / "visual" / f"{r['video_id']}.npy")),
            "question": torch.from_numpy(np.load(self.root / "question" / f"{r['question_id']}.npy")),
            "answer": torch.tensor(r["answer"], dtype=torch.long),
        }


def peer_loader(root: str | Path, batch_size: int = 64, num_workers: int = 8,
                pin_memory: bool = False, seed: int = 0) -> torch.utils.data.DataLoader:
    """The peers' DataLoader over :class:`NpyQADataset` (shuffled)."""
    ds = NpyQADataset(root)
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs["persistent_workers"] = True
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True,
                                       num_workers=num_workers, pin_memory=pin_memory,
                                       generator=torch.Generator().manual_seed(seed), **kwargs)

