"""The model family: shapes, CS, losses, score, config errors, ONNX export (tiny CPU models)."""

from __future__ import annotations

import pytest
import torch

from edgefreq.config import from_dict, to_dict
from edgefreq.errors import UserError
from edgefreq.kernels import decouple
from edgefreq.models import MODELS, FrequencyLoss, ModelConfig, build_model, count_parameters, flops, frequency_weights
from edgefreq.models.ocrgan import ChannelSelection, UNet

SIZE = 32
KIND_LEVELS = [("ocrgan", 1), ("ocrgan", 2), ("ocrgan", 3), ("skipganomaly", 1), ("wfdl", 1), ("wfdl", 2), ("wfdl", 3)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(kind: str, levels: int, **kw: object) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(**{"kind": kind, "ngf": 4, "ndf": 4, "nz": 16, "wfdl_width": 0.25, "map_sigma": 1.0, **kw})
    return build_model(cfg, 3, levels, SIZE)


def images(n: int = 4, seed: int = 0) -> torch.Tensor:
    """Smooth colour gratings with a random phase per image and channel, in [-0.6, 0.6]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, SIZE), torch.linspace(0, 1, SIZE), indexing="ij")
    phase = torch.rand(n, 3, 1, 1, generator=g) * 6.283
    return 0.6 * torch.sin(6.283 * (2 * xx + yy) + phase)


def train(model: torch.nn.Module, bands: list[torch.Tensor], steps: int, lr: float = 1e-3) -> list[float]:
    """The G step then the D step, as the training loop does; returns the content loss per step."""
    opt_g = torch.optim.Adam(model.generator_parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(model.discriminator_parameters(), lr=lr, betas=(0.5, 0.999)) if model.has_discriminator else None
    model.train()
    history = []
    for _ in range(steps):
        g, x_hat = model.losses_g(bands)
        opt_g.zero_grad()
        g["total"].backward()
        opt_g.step()
        if opt_d is not None:
            d = model.losses_d(bands, x_hat, [b.flip(-1) for b in bands])
            opt_d.zero_grad()
            d["total"].backward()
            opt_d.step()
        history.append(g["content"].item())
    return history


@pytest.mark.parametrize("kind,levels", KIND_LEVELS)
def test_shapes(kind: str, levels: int) -> None:
    model = tiny(kind, levels)
    bands = decouple(images(2), levels)
    assert model.reconstruct(bands).shape == (2, 3, SIZE, SIZE)
    score, amap = model.score(bands)
    assert score.shape == (2,) and amap.shape == (2, SIZE, SIZE)
    assert torch.isfinite(score).all() and (score >= 0).all()
    g, x_hat = model.losses_g(bands)
    assert g["total"].ndim == 0 and "content" in g and x_hat.shape == (2, 3, SIZE, SIZE)
    if model.has_discriminator:
        assert set(g) == {"total", "adv", "content", "latent"}
        d = model.losses_d(bands, x_hat, bands)
        assert set(d) == {"total", "real", "fake", "latent", "forged"}
        assert torch.allclose(d["total"], d["real"] + d["fake"] + d["latent"] + d["forged"])
        assert set(model.losses_d(bands, x_hat, None)) == {"total", "real", "fake", "latent"}
    else:
        assert model.discriminator_parameters() == []
        with pytest.raises(TypeError, match="no discriminator"):
            model.losses_d(bands, x_hat, None)


def test_registry_and_presets() -> None:
    assert set(MODELS) == {"ocrgan", "skipganomaly", "wfdl", "variation"}
    skip = ModelConfig(kind="skipganomaly")
    assert (skip.cs, skip.forged, skip.content_loss) == (False, False, "l1")
    ocr = ModelConfig()
    assert (ocr.kind, ocr.cs, ocr.forged, ocr.ngf, ocr.nz, ocr.lambda_score) == ("ocrgan", True, True, 64, 100, 0.9)
    assert ModelConfig(kind="wfdl").content_loss == "freq"
    # Skip-GANomaly is OCR-GAN's code with one band and no CS: same parameters as ocrgan, levels 1.
    assert type(tiny("skipganomaly", 1)) is type(tiny("ocrgan", 1))
    assert count_parameters(tiny("skipganomaly", 1)) == count_parameters(tiny("ocrgan", 1, cs=False))
    # Table V rows as configs; the config round-trips through YAML-safe dicts.
    rows = [({"kind": "skipganomaly"}, 1), ({"cs": False, "forged": True}, 1), ({"cs": False, "forged": False}, 2),
            ({"cs": True, "forged": False}, 2), ({}, 2), ({"forged": False}, 3)]
    for data, levels in rows:
        cfg = from_dict(ModelConfig, {**data, "ngf": 4, "ndf": 4}, where="model")
        assert from_dict(ModelConfig, to_dict(cfg)) == cfg
        model = build_model(cfg, 3, levels, SIZE)
        assert (model.cs is not None) == (cfg.cs and levels > 1)


def test_config_errors() -> None:
    with pytest.raises(UserError, match="unknown key 'ngf2'"):
        from_dict(ModelConfig, {"ngf2": 8}, where="model")
    with pytest.raises(UserError, match="unknown model 'pix2pix'"):
        ModelConfig(kind="pix2pix")
    with pytest.raises(UserError, match="content_loss"):
        ModelConfig(content_loss="ssim")
    with pytest.raises(UserError, match="skipganomaly always has cs: false"):
        from_dict(ModelConfig, {"kind": "skipganomaly", "cs": True}, where="model")
    with pytest.raises(UserError, match="wfdl always has forged: false"):
        ModelConfig(kind="wfdl", forged=True)
    with pytest.raises(UserError, match="lambda_score"):
        ModelConfig(lambda_score=1.5)
    with pytest.raises(UserError, match="FD levels to 1"):
        build_model(ModelConfig(kind="skipganomaly", ngf=4, ndf=4), 3, 2, SIZE)
    with pytest.raises(UserError, match="divisible by 2"):
        build_model(ModelConfig(ngf=4, ndf=4, depth=6), 3, 2, SIZE)
    with pytest.raises(UserError, match="input channels"):
        build_model(ModelConfig(ngf=4, ndf=4), 4, 2, SIZE)
    model = tiny("ocrgan", 2)
    with pytest.raises(UserError, match="built for 2 FD band"):
        model.score([images(1)])
    with pytest.raises(UserError, match="expects bands of N x 3 x 32 x 32"):
        model.score([torch.zeros(1, 3, 64, 64)] * 2)


def test_depth_adapts_to_input_size() -> None:
    cfg = ModelConfig(ngf=4, ndf=4)
    assert build_model(cfg, 3, 2, 64).depth == 6
    assert build_model(cfg, 1, 2, (32, 96)).depth == 5  # 1 x 3 bottleneck
    assert build_model(cfg, 3, 1, 224).depth == 5  # 7 x 7 bottleneck
    assert build_model(ModelConfig(ngf=4, ndf=4, depth=3), 3, 2, 64).depth == 3
    wfdl = build_model(ModelConfig(kind="wfdl", wfdl_width=0.25), 3, 1, 64)
    assert wfdl.encoder(torch.zeros(1, 3, 64, 64)).shape[-2:] == (2, 2)


def test_unet_matches_the_paper_size() -> None:
    """pix2pix U-Net, 256 input, ngf 64, 8 levels: the ~54M parameters per generator of the notes."""
    assert abs(count_parameters(UNet(3, 3, 64, 8)) - 54.41e6) < 0.01e6


def test_cs_is_a_registered_trained_module() -> None:
    model = tiny("ocrgan", 2)
    cs_params = [n for n, _ in model.named_parameters() if n.startswith("cs.")]
    assert len(cs_params) == 5 * 6  # one CS per encoder level (depth 5 at 32): squeeze + 2 selects, weight + bias
    assert all(n in model.state_dict() for n in cs_params)
    assert {id(p) for p in model.cs.parameters()} <= {id(p) for p in model.generator_parameters()}
    model.losses_g(decouple(images(2), 2))[0]["total"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.cs.parameters())


def test_cs_weights_sum_to_one_across_branches() -> None:
    torch.manual_seed(0)
    cs = ChannelSelection(channels=8, branches=3)
    feats = [torch.randn(5, 8, 4, 4) for _ in range(3)]
    w = cs.weights(feats)
    assert w.shape == (5, 3, 8)
    assert torch.allclose(w.sum(dim=1), torch.ones(5, 8), atol=1e-6)
    out = cs(feats)
    assert torch.allclose(out[1], feats[1] * w[:, 1, :, None, None])


@pytest.mark.parametrize("kind,levels", [("ocrgan", 2), ("wfdl", 2)])
def test_eval_forward_is_deterministic_and_saved(kind: str, levels: int) -> None:
    model = tiny(kind, levels)
    train(model, decouple(images(), levels), steps=2)
    model.eval()
    bands = decouple(images(2, seed=3), levels)
    with torch.no_grad():
        s1, m1 = model.score(bands)
        s2, m2 = model.score(bands)
    assert torch.equal(s1, s2) and torch.equal(m1, m2)
    torch.manual_seed(123)  # a differently initialized twin gets the same output from the saved weights
    twin = build_model(model.cfg, 3, levels, SIZE)
    twin.load_state_dict(model.state_dict())
    twin.eval()
    with torch.no_grad():
        assert torch.allclose(twin.score(bands)[0], s1)


@pytest.mark.parametrize("kind,levels", [("ocrgan", 2), ("skipganomaly", 1), ("wfdl", 1)])
def test_loss_decreases(kind: str, levels: int) -> None:
    history = train(tiny(kind, levels), decouple(images(), levels), steps=20)
    assert sum(history[-3:]) < 0.9 * sum(history[:3]), history


@pytest.mark.parametrize("kind,levels", [("ocrgan", 2), ("wfdl", 1)])
def test_score_flags_a_pasted_patch(kind: str, levels: int) -> None:
    model = tiny(kind, levels, ngf=8, ndf=8, wfdl_width=0.5)
    x = images()
    train(model, decouple(x, levels), steps=80)
    patched = x.clone()
    patched[:, :, 10:20, 12:22] = torch.rand(4, 3, 10, 10, generator=torch.Generator().manual_seed(1)) * 2 - 1
    model.eval()
    with torch.no_grad():
        normal, normal_map = model.score(decouple(x, levels))
        anomal, anomal_map = model.score(decouple(patched, levels))
    assert (anomal > 1.5 * normal).all(), (normal, anomal)
    # The map is highest inside the patch, and on the patch it exceeds the normal map.
    inside = anomal_map[:, 10:20, 12:22].mean(dim=(1, 2))
    assert (inside > 1.5 * anomal_map.mean(dim=(1, 2))).all()
    assert (inside > 2 * normal_map[:, 10:20, 12:22].mean(dim=(1, 2))).all()


def test_frequency_weights() -> None:
    w = frequency_weights(8, 8, floor=0.25)
    assert w[0, 0] == 0.25  # DC gets the floor, not 0
    assert torch.equal(w, w.flip(0).roll(1, 0))  # w(-u, v) == w(u, v): index -u mod 8
    assert torch.equal(w, w.flip(1).roll(1, 1))
    row = w[0, :5]  # frequencies 0, 1, 2, 3, -4 (the Nyquist bin): weights grow
    assert (row[1:] > row[:-1]).all()
    assert torch.allclose(w[0, 4], torch.tensor(1.25))  # Nyquist of one axis = floor + 1
    assert torch.allclose(w[1, 2], w[-1, -2]) and torch.allclose(w[1, 2], w[2, 1])


def test_frequency_loss_prefers_low_frequency_errors() -> None:
    """The same pixel-energy error costs more at a high frequency than at a low one."""
    loss = FrequencyLoss(floor=0.0, pixel=0.0)
    x = torch.zeros(1, 1, SIZE, SIZE)
    t = torch.arange(SIZE, dtype=torch.float32)
    low = torch.cos(2 * torch.pi * 1 * t / SIZE).view(1, 1, 1, -1).expand_as(x)
    high = torch.cos(2 * torch.pi * 12 * t / SIZE).view(1, 1, 1, -1).expand_as(x)
    assert torch.allclose(loss(low, x) * 12, loss(high, x), rtol=1e-4)
    assert loss(x, x) == 0


def test_flops_counts_the_score_pass() -> None:
    # depth 1, ngf 4, 8 x 8, lambda 1 (score skips D): down conv 3->4 on 4x4 out, up convT 4->3 from 4x4.
    model = build_model(ModelConfig(ngf=4, ndf=4, depth=1, lambda_score=1.0), 3, 1, 8)
    macs = 4 * 4 * 4 * (3 * 16) + 4 * 4 * 4 * (3 * 16)
    assert flops(model, 3, 8, 1) == 2 * macs
    with_d = build_model(ModelConfig(ngf=4, ndf=4, depth=1), 3, 1, 8)
    assert flops(with_d, 3, 8, 1) > 2 * macs  # lambda 0.9 runs D twice
    assert with_d.training  # the mode is restored


@pytest.mark.slow
def test_score_exports_to_onnx(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = tiny("ocrgan", 2).eval()

    class Engine(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.model.score([low, high])

    batch = torch.export.Dim("batch", min=1, max=64)
    bands = decouple(images(2), 2)
    program = torch.onnx.export(
        Engine().eval(), tuple(bands), dynamo=True, input_names=["low", "high"], output_names=["score", "amap"],
        dynamic_shapes={"low": {0: batch}, "high": {0: batch}},
    )
    path = tmp_path / "ocrgan.onnx"
    program.save(str(path))
    other = decouple(images(3, seed=5), 2)  # another batch size: the batch dimension is dynamic
    score, amap = ort.InferenceSession(str(path)).run(None, {"low": other[0].numpy(), "high": other[1].numpy()})
    with torch.no_grad():
        ref_score, ref_map = model.score(other)
    assert score.shape == (3,) and amap.shape == (3, SIZE, SIZE)
    assert torch.allclose(torch.from_numpy(score), ref_score, atol=1e-5, rtol=1e-4)
    assert torch.allclose(torch.from_numpy(amap), ref_map, atol=1e-5, rtol=1e-4)


def test_max_score_reduction_is_the_peak_of_the_map() -> None:
    import torch

    from edgefreq.models import ModelConfig, build_model

    torch.manual_seed(0)
    bands = [torch.randn(2, 3, 32, 32) for _ in range(2)]
    for kind in ("ocrgan", "wfdl"):
        extra = {"ngf": 4, "ndf": 4} if kind == "ocrgan" else {"wfdl_width": 0.25}
        mean = build_model(ModelConfig(kind=kind, lambda_score=1.0, **extra), 3, 2, 32).eval()
        peak = build_model(ModelConfig(kind=kind, lambda_score=1.0, score_reduce="max", **extra), 3, 2, 32).eval()
        peak.load_state_dict(mean.state_dict())
        with torch.no_grad():
            s_mean, amap = mean.score(bands)
            s_max, amap_max = peak.score(bands)
        assert torch.allclose(amap, amap_max)
        assert torch.allclose(s_max, amap.flatten(1).amax(1))
        assert (s_max > s_mean).all()
