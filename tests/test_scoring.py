"""Anomaly maps, per-pixel normalization, score composition, the variation floor, and the
scoring graph's agreement across torch, ONNX Runtime and AOTInductor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgefreq.errors import UserError
from edgefreq.kernels import decouple
from edgefreq.models import ModelConfig, build_model
from edgefreq.models.maps import error_map, msgms_map, sq_map, ssim_map
from edgefreq.models.score_head import ScoreHead

SIZE = 32


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gratings(n: int, seed: int = 0, size: int = SIZE) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    phase = torch.rand(n, 3, 1, 1, generator=g) * 0.5
    return 0.6 * torch.sin(6.283 * (2 * xx + yy) + phase)


def patched(x: torch.Tensor) -> torch.Tensor:
    y = x.clone()
    y[:, :, 10:18, 12:20] = torch.rand(x.shape[0], 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return y


@pytest.mark.parametrize("kind", ["sq", "ssim", "msgms"])
def test_maps_are_zero_on_a_perfect_reconstruction_and_peak_on_the_defect(kind: str) -> None:
    x = gratings(2)
    assert error_map(kind, x, x).abs().max() < 1e-5
    m = error_map(kind, x, patched(x))
    assert m.shape == (2, SIZE, SIZE)
    inside, outside = m[:, 10:18, 12:20].mean(), torch.cat([m[:, :8].flatten(), m[:, 22:].flatten()]).mean()
    assert inside > 5 * outside + 1e-6, (inside, outside)


def test_sq_map_is_the_channel_mean_squared_error() -> None:
    x, y = gratings(2), gratings(2, seed=3)
    assert torch.allclose(sq_map(x, y), ((x - y) ** 2).mean(1))


def test_ssim_map_matches_the_definition_on_a_flat_patch() -> None:
    """Constant images a and b: SSIM = (2ab + C1) / (a^2 + b^2 + C1) (no variance term)."""
    a, b = 0.2, -0.3
    x, y = torch.full((1, 1, 24, 24), a), torch.full((1, 1, 24, 24), b)
    c1 = (0.01 * 2) ** 2
    want = 1 - (2 * a * b + c1) / (a * a + b * b + c1)
    assert torch.allclose(ssim_map(x, y), torch.full((1, 24, 24), want), atol=1e-5)


def test_msgms_sees_edges_not_brightness() -> None:
    """A brightness offset has the same gradients (GMS 1): msgms ignores it, sq does not."""
    x = gratings(1)
    assert error_map("msgms", x, x + 0.3).abs().max() < 1e-4
    assert msgms_map(x, x + 0.3).abs().max() < 1e-4
    assert sq_map(x, x + 0.3).min() > 0.08


def fitted_head(normalize: str, n: int = 7, seed: int = 0, latent: bool = False, **kw) -> tuple[ScoreHead, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    cfg = ModelConfig(kind="ocrgan" if latent else "wfdl", normalize=normalize, score_reduce="max", lambda_score=0.9 if latent else 1.0, **kw)
    head = ScoreHead(cfg, (8, 8))
    g = torch.Generator().manual_seed(seed)
    raw = torch.rand(n, 8, 8, generator=g) * torch.linspace(0.1, 2, 8)  # per-column scale: z-scoring matters
    lat = torch.rand(n, generator=g) * 100 if latent else None
    loo = head.fit(raw, lat)
    return head, raw, lat, loo


def test_fit_scores_are_leave_one_out() -> None:
    """Each calibration score equals the score under statistics fitted on the other images only."""
    head, raw, _, loo = fitted_head("pixel")
    for i in range(raw.shape[0]):
        others = torch.cat([raw[:i], raw[i + 1 :]])
        single = ScoreHead(head.cfg, (8, 8))
        single.fit(others, None)
        score, _ = single(raw[i : i + 1], None)
        assert torch.allclose(score.double(), loo[i : i + 1], rtol=1e-5), i
    # the engine's statistics are those of every image
    assert torch.allclose(head.pixel_mean, raw.mean(0), atol=1e-6)
    # a probe (a forged copy of image i) is scored under the statistics without image i
    probe = raw.flip(-1) * 1.5
    _, probe_scores = ScoreHead(head.cfg, (8, 8)).fit(raw, None, (probe, None))
    for i in range(raw.shape[0]):
        single = ScoreHead(head.cfg, (8, 8))
        single.fit(torch.cat([raw[:i], raw[i + 1 :]]), None)
        assert torch.allclose(single(probe[i : i + 1], None)[0].double(), probe_scores[i : i + 1], rtol=1e-5), i


def test_std_floor_is_a_fraction_of_the_median_std() -> None:
    raw = torch.rand(9, 8, 8, generator=torch.Generator().manual_seed(0))
    raw[:, 0, 0] = 0.5  # a flat pixel: std 0
    head = ScoreHead(ModelConfig(kind="wfdl", normalize="pixel", std_floor=0.25), (8, 8))
    head.fit(raw, None)
    median = raw.std(0, unbiased=False).flatten().median()
    assert torch.isclose(head.pixel_std[0, 0], 0.25 * median, rtol=1e-4)
    assert torch.isfinite(head(raw, None)[0]).all()
    with pytest.raises(UserError, match="std_floor"):
        ModelConfig(std_floor=0.0)


def test_pixel_normalization_is_a_per_pixel_z_score() -> None:
    head, raw, _, _ = fitted_head("pixel")
    x = raw[:2] + 0.5
    _, amap = head(x, None)
    std = raw.std(0, unbiased=False)
    std = torch.maximum(std, 0.1 * std.flatten().median())
    assert torch.allclose(amap, (x - raw.mean(0)) / std, atol=1e-5)


def test_latent_and_content_terms_are_standardized_before_mixing() -> None:
    """Scaling the latent term by 1000 (as a D with large features would) changes no score:
    each term is standardized on calibration data, so lambda weighs them as it says."""
    head, raw, lat, loo = fitted_head("none", latent=True)
    s1, _ = head(raw, lat)
    head2 = ScoreHead(head.cfg, (8, 8))
    loo2 = head2.fit(raw, lat * 1000)
    s2, _ = head2(raw, lat * 1000)
    assert torch.allclose(s1, s2, atol=1e-4) and torch.allclose(loo, loo2, atol=1e-6)
    c = raw.flatten(1).amax(1)
    want = 0.9 * (c - c.mean()) / c.std() + 0.1 * (lat - lat.mean()) / lat.std()
    assert torch.allclose(s1, want, atol=1e-4)


def test_fit_needs_three_images_when_it_has_statistics_to_fit() -> None:
    head = ScoreHead(ModelConfig(kind="wfdl", normalize="pixel"), (8, 8))
    with pytest.raises(UserError, match="at least 3"):
        head.fit(torch.rand(2, 8, 8), None)
    ScoreHead(ModelConfig(kind="wfdl"), (8, 8)).fit(torch.rand(1, 8, 8), None)  # nothing to fit: fine


def test_variation_fits_the_mean_image_and_flags_a_patch() -> None:
    cfg = ModelConfig(kind="variation", normalize="pixel", score_reduce="max", map_sigma=1.0)
    model = build_model(cfg, 3, 1, SIZE).eval()
    assert model.trainable is False and model.generator_parameters() == []
    train = gratings(12, seed=1)
    model.fit([[train[:5]], [train[5:]]])
    assert torch.allclose(model.mean_image[0], train.mean(0), atol=1e-6)
    calib = gratings(6, seed=2)
    with torch.no_grad():
        model.head.fit(*model.raw_parts([calib]))
        good, _ = model.score([gratings(4, seed=3)])
        bad, amap = model.score([patched(gratings(4, seed=3))])
    assert (bad > 3 * good.abs().max()).all(), (good, bad)
    assert amap[:, 10:18, 12:20].mean() > amap[:, :8].mean() + 3


def calibrated(kind: str, map_kind: str, normalize: str, levels: int) -> torch.nn.Module:
    torch.manual_seed(0)
    extra = {"ngf": 4, "ndf": 4, "nz": 8} if kind == "ocrgan" else {"wfdl_width": 0.25}
    cfg = ModelConfig(kind=kind, map=map_kind, normalize=normalize, score_reduce="max", map_sigma=1.0, **extra)
    model = build_model(cfg, 3, levels, SIZE).eval()
    with torch.no_grad():
        model.head.fit(*model.raw_parts(decouple(noisy(5, seed=7), levels)))
    return model


def noisy(n: int, seed: int) -> torch.Tensor:
    """Gratings with strong noise: an untrained D's latent term then varies well above float32 noise."""
    return gratings(n, seed) + 0.5 * torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


@pytest.mark.slow
@pytest.mark.parametrize("map_kind", ["sq", "ssim", "msgms"])
@pytest.mark.parametrize("normalize", ["none", "pixel"])
def test_every_map_exports_to_onnx_and_agrees_with_torch(map_kind: str, normalize: str, tmp_path) -> None:
    """The map, the per-pixel statistics (graph constants) and the latent mix are inside the engine:
    ONNX Runtime agrees with torch to 1e-4 (export_onnx refuses to write a graph that does not)."""
    pytest.importorskip("onnxruntime")
    from edgefreq.export.onnx import export_onnx, run_onnxruntime
    from edgefreq.kernels import Preprocess

    model = calibrated("ocrgan", map_kind, normalize, 2)
    spec = Preprocess(size=(SIZE, SIZE), levels=2)
    bands = [b.numpy() for b in decouple(patched(noisy(3, seed=9)), 2)]
    report = export_onnx(model, spec, None, tmp_path / "m.onnx", kind="ocrgan", sample_bands=bands)
    assert report.check.ok and max(report.check.max_rel.values()) <= 1e-4
    score, amap = run_onnxruntime(tmp_path / "m.onnx", bands, [3])[3]
    with torch.no_grad():
        ref_score, ref_map = model.score([torch.from_numpy(b) for b in bands])
    for got, ref in ((score, ref_score.numpy()), (amap, ref_map.numpy())):  # every element, relative to the largest
        assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    # the statistics are baked in: an unfitted model scores differently
    if normalize == "pixel":
        fresh = build_model(model.cfg, 3, 2, SIZE).eval()
        fresh.load_state_dict(model.state_dict())
        with torch.no_grad():
            assert not np.allclose(fresh.score([torch.from_numpy(b) for b in bands])[0].numpy(), score, rtol=1e-3)


@pytest.mark.slow
def test_msgms_pixel_compiles_to_pt2_and_agrees_with_torch(tmp_path) -> None:
    """AOTInductor on the CPU, the heaviest map with normalization: agrees to 1e-4 (checked by build_pt2)."""
    from edgefreq.export.inductor import build_pt2
    from edgefreq.export.sidecar import BatchRange
    from edgefreq.kernels import Preprocess

    model = calibrated("wfdl", "msgms", "pixel", 1)
    spec = Preprocess(size=(SIZE, SIZE), levels=1)
    bands = [b.numpy() for b in decouple(patched(gratings(3, seed=9)), 1)]
    report = build_pt2(model, spec, None, tmp_path / "m.pt2", kind="wfdl", sample_bands=bands, batch=BatchRange(1, 2, 4))
    assert report.check.ok and max(report.check.max_rel.values()) <= 1e-4
