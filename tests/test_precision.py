"""Which precision extraction's encoders run at (common.device): native bf16 read from the CPU's
flags, 'auto' = bf16 weights on such a CPU and float32 on others, 'fp32' float32 everywhere;
``ask`` encodes at the precision its store records.  Only the flags file is replaced."""
from __future__ import annotations

import sys

import pytest
import torch

import common.device
from common.device import (autocast_dtype, bf16_in_cpu_flags, cpu_has_native_bf16,
                           resolve_precision, weights_dtype)

CPU, CUDA = torch.device("cpu"), torch.device("cuda")   # a CUDA device object needs no GPU
INTEL = "processor\t: 0\nflags\t\t: fpu sse2 avx512f amx_bf16 amx_tile\nbugs\t\t: spectre_v1\n"
EPYC = "processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 avx512_vnni\n\nprocessor\t: 1\n"
OLD = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\nbugs\t\t: avx512_bf16\n"  # not a flag line


@pytest.fixture
def cpuinfo(tmp_path, monkeypatch):
    """Point the flags file at a written one: ``cpuinfo(text)``; None = a file that is not there."""
    def point(text: str | None) -> None:
        path = tmp_path / f"cpuinfo{len(list(tmp_path.iterdir()))}"
        if text is not None:
            path.write_text(text)
        monkeypatch.setattr(common.device, "CPUINFO", str(path))
    return point


def test_native_bf16_is_read_from_the_flags_lines():
    assert bf16_in_cpu_flags(INTEL) and bf16_in_cpu_flags(EPYC)
    assert not bf16_in_cpu_flags(OLD) and not bf16_in_cpu_flags("") and not bf16_in_cpu_flags(
        "Features\t: fp asimd bf16\n")   # an Arm CPU's line: not the x86 flags asked for


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/cpuinfo is Linux's")
def test_this_cpu_is_read_from_proc_cpuinfo_once(cpuinfo):
    with open("/proc/cpuinfo") as f:
        assert cpu_has_native_bf16() == bf16_in_cpu_flags(f.read())
    for text, want in ((EPYC, True), (OLD, False), (None, False)):   # None: unreadable
        cpuinfo(text)
        assert cpu_has_native_bf16() is want
    with open(common.device.CPUINFO, "w") as f:   # read once: a later change is not seen
        f.write(EPYC)
    assert cpu_has_native_bf16() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/cpuinfo is Linux's")
@pytest.mark.parametrize("text,auto", [(INTEL, "bf16"), (EPYC, "bf16"), (OLD, "fp32"), (None, "fp32")])
def test_auto_on_the_cpu_is_bf16_weights_only_with_native_bf16(cpuinfo, text, auto):
    cpuinfo(text)
    for precision, want in (("auto", auto), ("fp32", "fp32"), ("bf16", "bf16"), ("fp16", "fp32")):
        assert resolve_precision(CPU, precision) == want, precision
        assert weights_dtype(CPU, precision) == (torch.bfloat16 if want == "bf16" else torch.float32)
        assert autocast_dtype(CPU, precision) is None   # bf16 weights, never CPU autocast
    # on CUDA the flags do not matter: autocast at the precision asked, float32 weights
    for precision, dtype in (("fp32", None), ("fp16", torch.float16), ("bf16", torch.bfloat16)):
        assert resolve_precision(CUDA, precision) == precision
        assert autocast_dtype(CUDA, precision) == dtype and weights_dtype(CUDA, precision) == torch.float32


def test_ask_encodes_at_the_stores_recorded_precision():
    """A store records compute_precision: ``ask`` uses it; one that records none was made at
    float32 on the CPU when its precision was 'auto', and ``ask`` on the CPU keeps that."""
    from infer.ask import AskSettings, encoder_config

    def attrs(**extra) -> dict:
        return {"encoders": {"visual": {"name": "ViT-B-32"}},
                "extractor_config": {"out": "feats.h5", "clip_weights": "random:0", "precision": "auto",
                                     **extra}}

    ask = AskSettings(device="cpu")
    assert encoder_config(attrs(compute_precision="bf16"), ask).precision == "bf16"
    assert encoder_config(attrs(compute_precision="fp32"), ask).precision == "fp32"
    assert encoder_config(attrs(), ask).precision == "fp32"
