"""Device-specific checks (``cuda`` marker: skipped without a CUDA GPU).

dtype and device placement of a generation, the seed contract across devices (noise is drawn on
the CPU, so the same seed gives the same latents on the GPU), the fused SDPA kernels (flash /
memory-efficient) accepting every attention of the backbones (no materialised masks, no
repeated k/v shapes they refuse), chunked VAE decode on the device, and bench/gpu.py's table
with peak VRAM."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from audiox_core import generate as G
from audiox_core.task import GenerationRequest, generate
from audiox_core.conditioning.t5 import T5TextEncoder
from audiox_core.tiny import make_tiny_model, save_tiny_t5

pytestmark = pytest.mark.cuda
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    return save_tiny_t5(tmp_path_factory.mktemp("t5") / "t5")


def _turbo(t5_dir, device, dtype=torch.float32):
    m = make_tiny_model("audiox_turbo", seed=0)
    m.set_text_encoder(T5TextEncoder.from_local(t5_dir, expected_dim=m.config.cond_dim))
    m.info["role"] = "student"
    m = m.to(dtype)
    m.pretransform.float()
    m.to(device)
    m.text_encoder.model.to(device)
    return m


def test_same_seed_same_latents_on_cpu_and_cuda(t5_dir):
    s = dict(prompt="two beeps")
    cpu_model = _turbo(t5_dir, "cpu")
    cpu = generate(cpu_model, GenerationRequest(settings=G.SamplerSettings.for_model(cpu_model, "turbo", seed=7), **s))
    gpu_model = _turbo(t5_dir, "cuda")
    gpu = generate(gpu_model, GenerationRequest(settings=G.SamplerSettings.for_model(gpu_model, "turbo", seed=7), **s))
    again = generate(gpu_model, GenerationRequest(settings=G.SamplerSettings.for_model(gpu_model, "turbo", seed=7),
                                                  **s))
    assert torch.equal(gpu.latents, again.latents)                    # reproducible on CUDA
    torch.testing.assert_close(gpu.latents, cpu.latents, rtol=1e-3, atol=1e-3)  # the same noise as on the CPU
    assert gpu.audio.device.type == "cpu" and gpu.audio.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_backbone_dtype_and_device(t5_dir, dtype):
    m = _turbo(t5_dir, "cuda", dtype)
    bb = m.backbone
    assert next(bb.parameters()).device.type == "cuda" and next(bb.parameters()).dtype == dtype
    x = torch.randn(1, m.config.io_channels, m.latent_length, device="cuda")
    ctx = torch.randn(1, 384, m.config.cond_dim, device="cuda")
    with torch.no_grad():
        out = bb(x, torch.rand(1, device="cuda"), ctx)
    assert out.device.type == "cuda" and out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("variant", ["audiox_turbo", "audiox"])
def test_fused_sdpa_kernels_run_every_backbone_attention(variant):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    m = make_tiny_model(variant, seed=0, dtype=torch.bfloat16).to("cuda")
    bb = m.backbone
    cfg = m.config
    n_ctx = 384 if cfg.backbone.type == "mmdit" else 128 + 128 + 215
    x = torch.randn(2, cfg.io_channels, m.latent_length, device="cuda")
    ctx = torch.randn(2, n_ctx, cfg.cond_dim, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        want = bb(x, torch.rand(2, device="cuda"), ctx)
        # only the fused kernels allowed: a materialised mask or an unsupported layout would raise
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
            got = bb(x, torch.rand(2, device="cuda"), ctx)
    assert got.shape == want.shape and torch.isfinite(got).all()


def test_chunked_vae_decode_on_the_device():
    m = make_tiny_model("audiox_turbo", seed=0).to("cuda")
    pt = m.pretransform
    lat = torch.randn(1, m.config.io_channels, 300, device="cuda")
    with torch.no_grad():
        whole = pt.decode(lat)
        chunked = pt.decode(lat, chunked=True, chunk_size=64)
    assert chunked.device.type == "cuda"
    assert (chunked - whole).abs().max() <= 1e-2 * whole.abs().max()  # cuDNN may use TF32 convolutions


def test_bench_gpu_table_on_cuda(tmp_path):
    cmd = [sys.executable, str(ROOT / "bench" / "gpu.py"), "--tiny", "--device", "cuda", "--warmup", "1", "--runs", "2",
           "--rows", "bf16", "bf16+loop", "lowvram", "partial"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "peak VRAM (GiB)" in p.stdout and torch.cuda.get_device_name() in p.stdout
    rows = [line for line in p.stdout.splitlines() if re.match(r"\| (bf16|bf16\+loop|lowvram|partial) \|", line)]
    assert len(rows) == 4


def test_partially_loaded_backbone_on_cuda_gives_the_same_latents(t5_dir):
    """Low-VRAM loading for real: a third of the backbone on the GPU, the other layers copied from
    the CPU per call (audiox_core.partial_loading); the latents equal the fully loaded model's."""
    from audiox_core import partial_loading as P
    from audiox_core.standalone import module_bytes
    s = dict(prompt="two beeps")
    full = _turbo(t5_dir, "cuda")
    want = generate(full, GenerationRequest(settings=G.SamplerSettings.for_model(full, "turbo", seed=7), **s))
    m = _turbo(t5_dir, "cuda")
    m.backbone.to("cpu")
    P.make_castable(m.backbone)
    info = P.load_partially(m.backbone, "cuda", module_bytes(m.backbone) // 3)
    assert info["layers_cast"] > 0 and info["layers_on_device"] > 0
    on_cpu = [layer for _n, layer in P.castable_layers(m.backbone) if layer.comfy_cast_weights]
    assert all(p.device.type == "cpu" for layer in on_cpu for p in layer.parameters())
    got = generate(m, GenerationRequest(settings=G.SamplerSettings.for_model(m, "turbo", seed=7), **s))
    assert all(p.device.type == "cpu" for layer in on_cpu for p in layer.parameters())  # still there
    torch.testing.assert_close(got.latents, want.latents, rtol=1e-5, atol=1e-5)


def test_static_turbo_loop_as_one_cuda_graph(t5_dir):
    """The Turbo loop compiled whole with mode="reduce-overhead" (inductor + CUDA graphs): the same
    latents as eager, and a replay for the next seed."""
    from audiox_core.acceleration import set_static_turbo_loop
    m = _turbo(t5_dir, "cuda")
    s = dict(prompt="two beeps")
    req = lambda seed: GenerationRequest(settings=G.SamplerSettings.for_model(m, "turbo", seed=seed), **s)  # noqa: E731
    want7, want8 = generate(m, req(7)).latents, generate(m, req(8)).latents
    set_static_turbo_loop(m, mode="reduce-overhead")
    got7, got8 = generate(m, req(7)).latents, generate(m, req(8)).latents
    torch.testing.assert_close(got7, want7, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got8, want8, rtol=1e-4, atol=1e-4)
