"""edgefreq.calibration: normal range, threshold policies, normalized score, YAML, INT8 batches."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edgefreq.calibration import (
    Calibration,
    NormalRange,
    ThresholdPolicy,
    false_reject_rate,
    normalize_score,
)
from edgefreq.errors import UserError
from edgefreq.export.calibration_images import calibration_batches
from edgefreq.kernels import Preprocess, frame_to_bands


def test_normal_range_matches_numpy() -> None:
    scores = np.random.default_rng(0).lognormal(size=500)
    r = NormalRange.from_scores(scores)
    assert r.count == 500
    assert r.min == scores.min() and r.max == scores.max()
    assert r.mean == pytest.approx(scores.mean(), rel=1e-12)
    assert r.std == pytest.approx(scores.std(ddof=1), rel=1e-12)
    for q in (0.5, 0.9, 0.95, 0.99, 0.999):
        assert r.quantile(q) == pytest.approx(np.quantile(scores, q), rel=1e-12)
    assert r.median == pytest.approx(np.median(scores), rel=1e-12)
    assert NormalRange.from_scores([2.5]).std == 0.0
    with pytest.raises(UserError, match="not in the normal range"):
        r.quantile(0.97)
    with pytest.raises(UserError, match="no normal scores"):
        NormalRange.from_scores([])
    with pytest.raises(UserError, match="NaN or infinite"):
        NormalRange.from_scores([1.0, float("nan")])


def test_policies_on_hand_made_scores() -> None:
    scores = np.arange(1.0, 101.0)  # 1 .. 100: median 50.5, mean 50.5, min 1, max 100
    r = NormalRange.from_scores(scores, quantiles=(0.9,))
    q = ThresholdPolicy("quantile", q=0.9)
    assert q.threshold(r) == pytest.approx(90.1)  # linear interpolation: 1 + 0.9 * 99
    assert false_reject_rate(scores, q.threshold(r)) == pytest.approx(0.10)
    m = ThresholdPolicy("max_margin", margin=0.1)
    assert m.threshold(r) == pytest.approx(100 + 0.1 * 99)
    assert false_reject_rate(scores, m.threshold(r)) == 0.0
    s = ThresholdPolicy("mean_std", k=1.0)
    assert s.threshold(r) == pytest.approx(50.5 + np.std(scores, ddof=1))
    assert false_reject_rate(scores, s.threshold(r)) == pytest.approx(21 / 100)  # 80 .. 100 lie above 79.51
    assert false_reject_rate([1.0, 2.0, 3.0], 2.0) == pytest.approx(1 / 3)  # strictly above


def test_policy_validation() -> None:
    with pytest.raises(UserError, match="kind"):
        ThresholdPolicy("percentile")
    with pytest.raises(UserError, match="q"):
        ThresholdPolicy("quantile", q=1.5)
    with pytest.raises(UserError, match="margin"):
        ThresholdPolicy(margin=-0.1)


def test_small_count_warning() -> None:
    scores = np.random.default_rng(1).normal(size=40)
    r = NormalRange.from_scores(scores, quantiles=(0.999,))
    warning = ThresholdPolicy("quantile", q=0.999).warning(r)
    assert warning is not None and "1000" in warning and "40" in warning and "maximum" in warning
    assert ThresholdPolicy("quantile", q=0.9).warning(r) is None
    assert ThresholdPolicy("max_margin").warning(r) is None
    assert ThresholdPolicy("max_margin").warning(NormalRange.from_scores(scores[:5])) is not None


def test_calibration_normalized_score() -> None:
    scores = np.random.default_rng(2).gamma(2.0, size=300)
    for policy in (ThresholdPolicy("quantile", q=0.99), ThresholdPolicy("max_margin"), ThresholdPolicy("mean_std", k=3)):
        cal = Calibration.from_scores(scores, policy)
        assert cal.threshold == pytest.approx(policy.threshold(cal.range))
        assert cal.false_reject_rate == false_reject_rate(scores, cal.threshold)
        assert normalize_score(float(np.median(scores)), cal) == pytest.approx(0.0, abs=1e-12)
        assert normalize_score(cal.threshold, cal) == pytest.approx(1.0)
        assert cal.normalize(cal.threshold * 2) > 1.0
    assert Calibration.from_scores(scores, ThresholdPolicy("quantile", q=0.99)).false_reject_rate == pytest.approx(0.01, abs=0.004)


def test_calibration_without_spread_is_user_error() -> None:
    with pytest.raises(UserError, match="not above the median"):
        Calibration.from_scores([3.0, 3.0, 3.0])


def test_save_load_round_trip(tmp_path: Path) -> None:
    scores = np.random.default_rng(3).normal(5.0, 1.0, size=64)
    cal = Calibration.from_scores(scores, ThresholdPolicy("quantile", q=0.95))
    path = tmp_path / "bottle.calibration.yaml"
    cal.save(path)
    loaded = Calibration.load(path)
    assert loaded == cal
    assert yaml.safe_load(path.read_text())["range"]["quantiles"][0.95] == cal.range.quantile(0.95)
    with pytest.raises(UserError, match="folder not found"):
        cal.save(tmp_path / "missing" / "c.yaml")


def test_load_errors(tmp_path: Path) -> None:
    good = Calibration.from_scores(np.arange(30.0)).to_dict()
    path = tmp_path / "c.yaml"
    for data, match in [
        ({**good, "colour": "red"}, "unknown key 'colour'"),
        ({**good, "range": {**good["range"], "p99": 1.0}}, r"range: unknown key 'p99'"),
        ({**good, "policy": {**good["policy"], "sigma": 2}}, r"policy: unknown key 'sigma'"),
        ({k: v for k, v in good.items() if k != "threshold"}, "missing key 'threshold'"),
        ({**good, "threshold": "high"}, "must be numbers"),
    ]:
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(UserError, match=match):
            Calibration.load(path)
    with pytest.raises(UserError, match="not found"):
        Calibration.load(tmp_path / "absent.yaml")


def test_a_hand_edited_calibration_is_refused(tmp_path: Path) -> None:
    good = Calibration.from_scores(np.linspace(1.0, 2.0, 30)).to_dict()
    assert set(good) == {"range", "policy", "threshold", "false_reject_rate", "sha256"}
    path = tmp_path / "c.yaml"
    wider = {**good["range"], "max": 20.0}
    legacy = {k: v for k, v in good.items() if k != "sha256"}
    for data, match in [
        ({**good, "threshold": float("inf")}, "not a finite number"),
        ({**good, "threshold": 1e30}, r"does not follow from the stored normal range and policy \(max \+ 0.1"),
        ({**legacy, "threshold": 1e30}, "does not follow from"),  # no digest: the range/policy check still holds
        ({**good, "range": {**good["range"], "max": float("inf")}}, "not a finite number"),
        ({**good, "range": wider, "threshold": 20.0 + 0.1 * 19.0}, "does not match its sha256: it was edited by hand"),
        ({**good, "false_reject_rate": 0.0001}, "does not match its sha256"),
        ({**good, "sha256": "0" * 64}, "does not match its sha256"),
    ]:
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(UserError, match=match) as exc:
            Calibration.load(path)
        assert "\n" not in str(exc.value)
        assert "--threshold X" in str(exc.value) or "normal range holds" in str(exc.value)
    path.write_text(yaml.safe_dump(legacy))  # written before the digest existed: loads
    assert Calibration.load(path) == Calibration.from_dict(good)


def test_the_shipped_embedded_calibration_still_loads() -> None:
    from edgefreq.export.sidecar import Sidecar

    embedded = Path(__file__).resolve().parents[1] / "edgefreq" / "embedded" / "default.onnx"
    calibration = Sidecar.load(embedded).calibration
    assert calibration.threshold == pytest.approx(calibration.policy.threshold(calibration.range), rel=1e-12)


def test_calibration_batches_are_the_runtime_bands(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    paths = []
    for i, (h, w) in enumerate([(30, 41), (50, 37), (33, 33)]):  # different sizes, gray and colour
        img = rng.integers(0, 256, (h, w, 3) if i != 1 else (h, w), dtype=np.uint8)
        paths.append(tmp_path / f"{i}.png")
        cv2.imwrite(str(paths[-1]), img)
    spec = Preprocess(size=(16, 24), levels=3)
    batches = list(calibration_batches(paths, spec, batch_size=2))
    assert [len(b) for b in batches] == [3, 3]
    assert [b[0].shape for b in batches] == [(2, 3, 16, 24), (1, 3, 16, 24)]
    expected = frame_to_bands(cv2.imread(str(paths[1]), cv2.IMREAD_UNCHANGED), spec, impl="opencv")
    for k in range(3):
        assert batches[0][k].dtype == np.float32
        np.testing.assert_array_equal(batches[0][k][1], expected[k][0].numpy())
    with pytest.raises(UserError, match="batch size"):
        next(calibration_batches(paths, spec, 0))
    with pytest.raises(UserError, match="no calibration images"):
        next(calibration_batches([], spec, 4))


def test_the_ok_nok_rule_is_written_once() -> None:
    """Above the threshold or not a finite score is NOK; at the threshold is OK (the runtime,
    eval and the false-reject rate all call this rule)."""
    from edgefreq.calibration import is_nok

    assert is_nok(1.0, 0.5) is True and is_nok(0.5, 0.5) is False and is_nok(float("nan"), 0.5) is True
    assert is_nok(float("inf"), 1e30) is True
    assert is_nok(np.array([0.1, 0.6, np.nan]), 0.5).tolist() == [False, True, True]
    assert false_reject_rate([0.1, 0.6, 0.7, 0.2], 0.5) == 0.5


def test_one_heatmap_overlay_for_every_view() -> None:
    """Blue at `low`, red at `high`, at the image's size (or the map's); NaN drawn as low."""
    from edgefreq.heatmap import overlay

    image = np.full((20, 40), 128, np.uint8)
    amap = np.zeros((10, 20), np.float32)
    amap[:, 10:] = 5.0
    amap[0, 0] = np.nan
    out = overlay(image, amap, 0.0, 5.0)
    assert out.shape == (20, 40, 3)
    assert out[10, 35, 2] > out[10, 35, 0] and out[10, 5, 0] > out[10, 5, 2]  # red right, blue left (BGR)
    assert overlay(image, amap, 0.0, 5.0, at_map_size=True).shape == (10, 20, 3)
