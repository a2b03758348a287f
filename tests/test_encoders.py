"""Encoders (real open_clip ViT-B-32 and torchvggish networks, random seeded weights) and weight
resolution: token path vs encode_text, seeds, weight files, fail-fast without network."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from extract.encoders import ClipEncoder
from extract.vggish import VGGishEncoder
from extract.weights import (ResolvedWeights, WeightsError, resolve_clip_weights,
                             resolve_vggish_pca, resolve_vggish_weights, save_weights,
                             sha256_file)

torch.set_num_threads(2)
#: the equality tests compare float32 paths ('auto' is bf16 on CPUs with native bf16, like CI's)
FP32 = "fp32"


@pytest.fixture(scope="module")
def clip():
    return ClipEncoder("ViT-B-32", resolve_clip_weights("ViT-B-32", "random:0"), device="cpu",
                       precision=FP32, text_len=8)


TEXTS = ["How many instruments are sounding",
         "a",
         "Is the violin on the left louder than the cello on the right of the stage during the "
         "whole performance"]


def test_token_path_sentence_equals_open_clip_encode_text(clip):
    sent, tokens, mask = clip.encode_text(TEXTS)
    ref = clip.encode_text_reference(TEXTS)
    assert sent.shape == (3, 512) and tokens.shape == (3, 8, 512) and mask.shape == (3, 8)
    np.testing.assert_allclose(sent, ref, rtol=1e-4, atol=1e-4)
    ids = clip.tokenize(TEXTS)
    n_real = (ids != 0).sum(1).numpy()          # SOT + words + EOT
    assert mask.sum(1).tolist() == np.minimum(n_real, 8).tolist()
    assert n_real[0] <= 8 and n_real[2] > 8      # one fits, one is truncated
    assert not tokens[1][~mask[1]].any()         # padding positions are zero
    # the EOT position's token embedding is the sentence embedding
    eot = int(n_real[0]) - 1
    np.testing.assert_allclose(tokens[0, eot], sent[0], rtol=1e-4, atol=1e-4)


def test_image_embeddings_and_patch_tokens(clip):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    emb, none = clip.encode_images(frames)
    assert emb.shape == (3, 512) and none is None
    pooled, patches = clip.encode_images(frames, patches=True)
    assert patches.shape == (3, 49, 512) and clip.n_patches == 49
    np.testing.assert_allclose(pooled, emb, rtol=1e-4, atol=1e-4)
    one, _ = clip.encode_images(frames[1:2])      # batching does not change a frame's embedding
    np.testing.assert_allclose(one[0], emb[1], rtol=1e-4, atol=1e-4)
    assert not np.allclose(emb[0], emb[1])


def test_cpu_auto_is_bf16_where_the_cpu_has_native_bf16_and_close_to_float32(clip):
    """The default precision ('auto') on the CPU: bfloat16 weights and no autocast (autocast
    there was slower than float32) on a CPU with native bf16 (CI's has avx512_bf16), float32 on
    one without; close to the float32 embeddings, not equal to them.  'fp32' stays float32."""
    from common.device import cpu_has_native_bf16

    assert clip.autocast.dtype is None and clip.dtype == torch.float32  # the fixture: 'fp32'
    auto = ClipEncoder("ViT-B-32", resolve_clip_weights("ViT-B-32", "random:0"), device="cpu",
                       text_len=8)
    assert auto.autocast.dtype is None
    if not cpu_has_native_bf16():   # the bf16 path itself, as 'auto' takes it on such CPUs
        assert auto.dtype == torch.float32
        auto = ClipEncoder("ViT-B-32", resolve_clip_weights("ViT-B-32", "random:0"),
                           device="cpu", precision="bf16", text_len=8)
    bf16 = auto
    assert {p.dtype for p in bf16.model.parameters()} == {torch.bfloat16}
    frames = np.random.default_rng(1).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    ref, got = clip.encode_images(frames)[0], bf16.encode_images(frames)[0]
    cos = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    assert not np.array_equal(ref, got) and cos.min() > 0.999, cos  # measured 0.99994 (60 frames)
    sent = bf16.encode_text(TEXTS[:1])[0]
    assert np.allclose(sent, clip.encode_text(TEXTS[:1])[0], rtol=0.05, atol=0.05)


@pytest.fixture(scope="module")
def vggish3():
    return VGGishEncoder(resolve_vggish_weights("random:3"), precision=FP32)


def test_vggish_auto_follows_the_cpu_flags_and_fp32_stays_float32(tmp_path, monkeypatch):
    """'auto' on the CPU: bf16 weights where /proc/cpuinfo lists a native-bf16 flag, float32
    where not; 'fp32' float32 either way (only the flags file is replaced)."""
    import common.device

    for flags, want in (("fpu sse2 avx512f avx512_bf16", torch.bfloat16), ("fpu sse2 avx2", torch.float32)):
        info = tmp_path / f"cpuinfo-{want}"
        info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\n")
        monkeypatch.setattr(common.device, "CPUINFO", str(info))
        for precision, dtype in (("auto", want), ("fp32", torch.float32)):
            enc = VGGishEncoder(resolve_vggish_weights("random:3"), precision=precision)
            assert {p.dtype for p in enc.model.parameters()} == {dtype}, (flags, precision)
            assert enc.autocast.dtype is None and enc.encode(np.zeros((1, 96, 64))).dtype == np.float32


def test_vggish_on_the_cpu_in_bf16_keeps_bf16_weights_close_to_float32(vggish3):
    bf16 = VGGishEncoder(resolve_vggish_weights("random:3"), precision="bf16")
    assert {p.dtype for p in bf16.model.parameters()} == {torch.bfloat16}
    x = np.random.default_rng(2).normal(size=(4, 96, 64)).astype(np.float32)
    ref, got = vggish3.encode(x), bf16.encode(x)
    assert got.dtype == np.float32 and not np.array_equal(ref, got)
    cos = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    assert cos.min() > 0.999, cos


def test_vggish_channels_last_on_the_cpu_equals_the_library_layout(vggish3):
    """The CPU fast path (channels-last convolutions) against torchvggish's own layout."""
    assert vggish3.model.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    ref = copy.deepcopy(vggish3.model).to(memory_format=torch.contiguous_format)
    assert ref.features[0].weight.is_contiguous()
    x = np.random.default_rng(5).standard_normal((7, 96, 64)).astype(np.float32)
    with torch.no_grad():
        expected = ref(torch.as_tensor(x)[:, None]).numpy()
    np.testing.assert_allclose(vggish3.encode(x), expected, rtol=1e-4, atol=1e-5)


def test_our_vggish_network_is_torchvggish_s_vgg(vggish3):
    """extract.vggish_net (ours, no resampy/numba import) against torchvggish's VGG, the
    reference: the same seeded values under the same names, the same outputs."""
    from torchvggish.torchvggish import VGG, make_layers

    torch.manual_seed(3)
    ref = VGG(make_layers(), postprocess=False).eval()
    ours = copy.deepcopy(vggish3.model).to(memory_format=torch.contiguous_format)
    want, got = ref.state_dict(), ours.state_dict()
    assert list(want) == list(got) and all(torch.equal(want[k], got[k]) for k in want)
    x = torch.as_tensor(np.random.default_rng(2).standard_normal((3, 1, 96, 64)).astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=0)


def test_random_weights_are_seeded(vggish3):
    b = VGGishEncoder(resolve_vggish_weights("random", seed=3), precision=FP32)
    c = VGGishEncoder(resolve_vggish_weights("random:6"), precision=FP32)
    x = np.random.default_rng(1).standard_normal((4, 96, 64)).astype(np.float32)
    assert vggish3.weights.identity == b.weights.identity == "random:3"
    assert np.array_equal(vggish3.encode(x), b.encode(x))
    assert not np.allclose(vggish3.encode(x), c.encode(x))
    assert vggish3.encode(x).shape == (4, 128)


def test_clip_from_a_file_is_built_without_random_values_and_equals_the_saved_model(clip, tmp_path):
    """The build under skip_random_init gets every tensor from the file (strict load) and
    computes what no file holds (the text tower's causal mask) as open_clip does."""
    path = save_weights(clip.model, tmp_path / "clip.safetensors")
    from_file = ClipEncoder("ViT-B-32", resolve_clip_weights("ViT-B-32", str(path)), device="cpu",
                            precision=FP32, text_len=8)
    want, got = clip.model.state_dict(), from_file.model.state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert torch.equal(from_file.model.attn_mask, clip.model.attn_mask)
    frames = np.random.default_rng(0).integers(0, 255, (2, 224, 224, 3), dtype=np.uint8)
    assert np.array_equal(from_file.encode_images(frames)[0], clip.encode_images(frames)[0])
    assert np.array_equal(from_file.encode_text(TEXTS)[0], clip.encode_text(TEXTS)[0])
    partial = tmp_path / "partial.pt"   # a missing tensor would leave uninitialised memory
    sd = dict(want)
    sd.pop("visual.proj")
    torch.save(sd, partial)
    with pytest.raises(WeightsError, match="visual.proj"):
        ClipEncoder("ViT-B-32", resolve_clip_weights("ViT-B-32", str(partial)), device="cpu")


def test_skip_random_init_skips_only_random_fills():
    from extract.skip_init import skip_random_init

    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    with skip_random_init():
        layer = torch.nn.Linear(3, 4)
        ones = torch.empty(5).fill_(1.0)
        mask = torch.empty(3, 3).fill_(float("-inf")).triu_(1)
    assert torch.equal(torch.random.get_rng_state(), before)   # nothing drawn
    assert torch.equal(ones, torch.ones(5)) and mask[0, 1] == float("-inf") and mask[1, 0] == 0
    assert layer.weight.shape == (4, 3)
    assert torch.nn.Linear(3, 4).weight.std() > 0   # outside the block, init draws again


def test_vggish_weight_file_and_hub_cache(vggish3, tmp_path, monkeypatch):
    seeded = vggish3
    path = save_weights(seeded.model, tmp_path / "vggish.pt")
    from_file = VGGishEncoder(resolve_vggish_weights(str(path)), precision=FP32)
    x = np.random.default_rng(3).standard_normal((5, 96, 64)).astype(np.float32)
    assert np.array_equal(from_file.encode(x), seeded.encode(x))
    assert from_file.weights.identity == f"sha256:{sha256_file(path)}"
    # 'default' is found in the torch hub cache without any network
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "vggish-10086976.pth").hardlink_to(path)
    w = resolve_vggish_weights("default")
    assert w.kind == "file" and w.tag == "default"
    assert np.array_equal(VGGishEncoder(w, precision=FP32).encode(x), seeded.encode(x))
    with pytest.raises(WeightsError, match="not VGGish weights"):
        bad = tmp_path / "bad.pt"
        torch.save({"x": torch.zeros(2)}, bad)
        VGGishEncoder(resolve_vggish_weights(str(bad)))


def test_a_weight_file_is_hashed_in_the_background_and_pickles_with_its_digest(tmp_path):
    import hashlib
    import pickle

    path = tmp_path / "w.pt"
    torch.save({"x": torch.arange(1000)}, path)
    w = resolve_vggish_weights(str(path))   # returns at once; the digest is read when needed
    assert w.identity == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert w == resolve_vggish_weights(str(path)) and w.identity == f"sha256:{sha256_file(path)}"
    again = pickle.loads(pickle.dumps(resolve_vggish_weights(str(path))))   # dask ships these
    assert again == w and again.path == str(path) and again.kind == "file"


def test_a_vggish_weight_file_is_cast_to_the_parameters_dtype(vggish3, tmp_path):
    """The network for a file is built without its random init; the file's tensors become the
    parameters, float32 as copying them into the initialised network gave."""
    half = {k: v.half() for k, v in vggish3.model.state_dict().items()}
    torch.save(half, tmp_path / "half.pt")
    got = VGGishEncoder(resolve_vggish_weights(str(tmp_path / "half.pt")),
                        precision=FP32).model.state_dict()
    assert got.keys() == half.keys()
    assert all(got[k].dtype == torch.float32 and torch.equal(got[k], v.float())
               for k, v in half.items())


def test_vggish_postprocess_matches_torchvggish(vggish3, tmp_path):
    from torchvggish.torchvggish import Postprocessor

    rng = np.random.default_rng(4)
    pca = {"pca_eigen_vectors": torch.as_tensor(rng.standard_normal((128, 128)) * 0.05),
           "pca_means": torch.as_tensor(rng.standard_normal(128) * 0.01)}
    torch.save(pca, tmp_path / "pca.pth")
    enc = VGGishEncoder(vggish3.weights, precision=FP32, postprocess=True,
                        pca=resolve_vggish_pca(str(tmp_path / "pca.pth")))
    raw = vggish3
    x = rng.standard_normal((6, 96, 64)).astype(np.float32) * 3
    ref = Postprocessor.__new__(Postprocessor)   # the library's own post-processing, no download
    ref._pca_matrix = pca["pca_eigen_vectors"].float()
    ref._pca_means = pca["pca_means"].reshape(-1, 1).float()
    expected = ref.postprocess(torch.as_tensor(raw.encode(x))).numpy()
    got = enc.encode(x)
    np.testing.assert_allclose(got, expected, atol=1.0)   # quantised: at most one step apart
    assert (got == expected).mean() > 0.99
    assert got.min() >= 0 and got.max() <= 255


@pytest.mark.timeout(60)
def test_default_weights_fail_fast_without_network_or_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SHMAMBA_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(WeightsError) as err:
        resolve_clip_weights("ViT-B-32", "default")
    msg = str(err.value)
    assert "--clip-weights /path/to/file" in msg and "openai" in msg and str(tmp_path) in msg
    with pytest.raises(WeightsError, match="--vggish-weights /path/to/file"):
        resolve_vggish_weights("default")
    with pytest.raises(WeightsError, match="not a file, 'random', or a pretrained tag"):
        resolve_clip_weights("ViT-B-32", "no-such-tag")
    with pytest.raises(WeightsError, match="not found"):
        resolve_clip_weights("ViT-B-32", str(tmp_path / "missing.pt"))
    with pytest.raises(WeightsError, match="random:<integer seed>"):
        resolve_vggish_weights("random:abc")


def test_clip_tag_found_in_open_clip_url_cache(tmp_path, monkeypatch):
    from extract.weights import clip_tag_cache

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    assert clip_tag_cache("ViT-B-32", "openai")[0] is None
    cached = tmp_path / ".cache" / "clip" / "ViT-B-32.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"stand-in for the openai file")
    monkeypatch.setenv("SHMAMBA_OFFLINE", "1")
    w = resolve_clip_weights("ViT-B-32", "default")
    assert w == ResolvedWeights("tag", f"openai@sha256:{sha256_file(cached)}", path=str(cached),
                                tag="openai")


@pytest.mark.timeout(120)
def test_every_missing_default_weight_is_named_in_one_run_with_whole_urls(tmp_path, monkeypatch):
    """Offline, no cache: one ``extract`` names CLIP and VGGish together (not one per run), and
    each download URL is printed on one line at 80 columns, so it can be copied."""
    from typer.testing import CliRunner

    from cli import app
    from videos import make_video

    for k, v in {"SHMAMBA_OFFLINE": "1", "HOME": str(tmp_path), "TORCH_HOME": str(tmp_path / "t"),
                 "HF_HUB_CACHE": str(tmp_path / "hf")}.items():
        monkeypatch.setenv(k, v)
    make_video(tmp_path / "v" / "a.mp4", 1.0)
    res = CliRunner().invoke(app, ["extract", "--videos", str(tmp_path / "v"), "--out",
                                   str(tmp_path / "f.h5"), "--device", "cpu", "--workers", "0",
                                   "--quiet"], env={"COLUMNS": "80"})
    assert res.exit_code == 2, res.output
    assert "--clip-weights /path/to/file" in res.output
    assert "--vggish-weights /path/to/file" in res.output
    urls = [w.strip("()") for w in res.output.split() if "://" in w]
    assert len(urls) == 2 and all(u.endswith((".pt", ".pth")) for u in urls), res.output
    assert not (tmp_path / "f.h5").exists()
