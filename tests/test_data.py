"""edgefreq.data: image files, the MVTec AD layout, the split, ImageDataset, masks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edgefreq.data import ImageDataset, load_image, load_mask, scan_dataset, split_train_calibration
from edgefreq.errors import UserError
from edgefreq.kernels import Preprocess, preprocess_frame

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _write(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


def _colour(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _gray(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def _mask(h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[h // 4 : h // 2, w // 4 : w // 2] = 255
    return m


# ---- load_image -------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".png", ".bmp"])
def test_load_image_lossless_colour_and_gray(tmp_path: Path, ext: str) -> None:
    colour, gray = _colour(37, 51), _gray(29, 17)
    c = load_image(_write(tmp_path / f"c{ext}", colour))
    g = load_image(_write(tmp_path / f"g{ext}", gray))
    assert c.dtype == np.uint8 and c.shape == (37, 51, 3) and np.array_equal(c, colour)
    assert g.dtype == np.uint8 and g.shape == (29, 17) and np.array_equal(g, gray)


def test_load_image_jpeg_gray_stays_gray(tmp_path: Path) -> None:
    img = load_image(_write(tmp_path / "x.JPG", _gray(31, 45)))
    assert img.shape == (31, 45) and img.dtype == np.uint8


def test_load_image_16bit_scaled_and_alpha_dropped(tmp_path: Path) -> None:
    g16 = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 257).astype(np.uint16)
    assert np.array_equal(load_image(_write(tmp_path / "g16.png", g16)), np.arange(256, dtype=np.uint8).reshape(16, 16))
    bgra = np.dstack([_colour(9, 11), np.full((9, 11), 7, np.uint8)])
    out = load_image(_write(tmp_path / "a.png", bgra))
    assert out.shape == (9, 11, 3) and np.array_equal(out, bgra[:, :, :3])


def test_load_image_missing_and_corrupt_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    with pytest.raises(UserError, match="nope.png"):
        load_image(missing)
    data = cv2.imencode(".png", _colour(40, 40))[1].tobytes()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated.png.*not a readable image"):
        load_image(truncated)
    noise = tmp_path / "noise.jpg"
    noise.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(UserError, match="noise.jpg"):
        load_image(noise)
    empty = tmp_path / "empty.bmp"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match="empty.bmp.*empty"):
        load_image(empty)
    with pytest.raises(UserError, match="is a folder"):
        load_image(tmp_path)


# ---- scan_dataset -----------------------------------------------------------------------


def _dataset(root: Path) -> Path:
    """train/good: 3 mixed files; test/good 2; test/aaa_scratch 2 with masks; test/zz_dent 1 without."""
    _write(root / "train/good/000.png", _colour(33, 47, 1))
    _write(root / "train/good/001.JPG", _gray(33, 47, 2))
    _write(root / "train/good/002.bmp", _colour(40, 30, 3))
    (root / "train/good/notes.txt").write_text("not an image")
    _write(root / "test/good/000.png", _colour(33, 47, 4))
    _write(root / "test/good/001.jpeg", _colour(33, 47, 5))
    for stem in ("000", "001"):
        _write(root / f"test/aaa_scratch/{stem}.png", _colour(33, 47, 6))
        _write(root / f"ground_truth/aaa_scratch/{stem}_mask.png", _mask(33, 47))
    _write(root / "test/zz_dent/000.png", _colour(33, 47, 7))
    return root


def test_scan_dataset_layout_labels_masks_warnings(tmp_path: Path) -> None:
    index = scan_dataset(_dataset(tmp_path / "part"))
    assert [p.name for p in index.train_good] == ["000.png", "001.JPG", "002.bmp"]
    by_folder = {(s.defect, s.path.name): s for s in index.test}
    assert len(index.test) == 5
    # 'aaa_scratch' sorts before 'good': it is still the positive class.
    assert all(s.label == 1 for s in index.test if s.defect != "good")
    assert all(s.label == 0 and s.mask is None for s in index.test if s.defect == "good")
    assert by_folder[("aaa_scratch", "001.png")].mask == tmp_path / "part/ground_truth/aaa_scratch/001_mask.png"
    assert by_folder[("zz_dent", "000.png")].mask is None
    assert len(index.warnings) == 1 and "zz_dent" in index.warnings[0] and "without a mask" in index.warnings[0]
    assert index.counts() == {"train/good": 3, "test/aaa_scratch": 2, "test/good": 2, "test/zz_dent": 1}


def test_scan_dataset_train_only_is_valid(tmp_path: Path) -> None:
    _write(tmp_path / "line/train/good/a.png", _gray(20, 20))
    index = scan_dataset(tmp_path / "line")
    assert len(index.train_good) == 1 and index.test == [] and index.warnings == []


def test_scan_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        scan_dataset(tmp_path / "missing")
    (tmp_path / "a").mkdir()
    with pytest.raises(UserError, match="no train/good"):
        scan_dataset(tmp_path / "a")
    (tmp_path / "a/train/good").mkdir(parents=True)
    (tmp_path / "a/train/good/readme.txt").write_text("x")
    with pytest.raises(UserError, match="no images"):
        scan_dataset(tmp_path / "a")


def test_scan_dataset_mask_without_image(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "part")
    orphan = _write(root / "ground_truth/aaa_scratch/007_mask.png", _mask(33, 47))
    with pytest.raises(UserError, match=str(orphan)):
        scan_dataset(root)
    orphan.unlink()
    _write(root / "ground_truth/ghost/000_mask.png", _mask(33, 47))
    with pytest.raises(UserError, match="ghost"):
        scan_dataset(root)


# ---- split ------------------------------------------------------------------------------


def test_split_reproducible_disjoint_order_free() -> None:
    paths = [Path(f"/x/{i:03d}.png") for i in range(50)]
    train, cal = split_train_calibration(paths, 0.2, seed=3)
    assert len(cal) == 10 and len(train) == 40
    assert set(train).isdisjoint(cal) and set(train) | set(cal) == set(paths)
    assert train == sorted(train) and cal == sorted(cal)
    assert split_train_calibration(list(reversed(paths)), 0.2, seed=3) == (train, cal)
    assert split_train_calibration([str(p) for p in paths], 0.2, seed=3) == (train, cal)
    assert split_train_calibration(paths, 0.2, seed=4)[1] != cal


def test_split_small_sets_and_errors() -> None:
    two = [Path("b.png"), Path("a.png")]
    train, cal = split_train_calibration(two, 0.01)
    assert len(train) == 1 and len(cal) == 1
    train, cal = split_train_calibration([Path(f"{i}.png") for i in range(5)], 0.99)
    assert len(train) == 1 and len(cal) == 4
    with pytest.raises(UserError, match="at least 2"):
        split_train_calibration([Path("a.png")])
    with pytest.raises(UserError, match="between 0 and 1"):
        split_train_calibration(two, 1.0)
    with pytest.raises(UserError, match="same file twice"):
        split_train_calibration([Path("a.png"), Path("a.png")])


# ---- ImageDataset and masks ---------------------------------------------------------------


def test_image_dataset_matches_runtime_preprocessing(tmp_path: Path) -> None:
    colour = _write(tmp_path / "c.png", _colour(45, 61))
    gray = _write(tmp_path / "g.jpg", _gray(30, 50))
    spec = Preprocess(size=(24, 32), roi=(2, 3, 40, 25))
    ds = ImageDataset([colour, gray], spec)
    assert len(ds) == 2
    for i, p in enumerate([colour, gray]):
        x = ds[i]
        assert x.dtype == torch.float32 and x.shape == (3, 24, 32)
        assert torch.equal(x, torch.from_numpy(preprocess_frame(load_image(p), spec)))
    g = ds[1]
    assert torch.equal(g[0], g[1]) and torch.equal(g[1], g[2])  # gray file -> replicated
    ds[0].zero_()  # a caller's in-place edit must not reach the cache
    assert torch.equal(ds[0], torch.from_numpy(preprocess_frame(load_image(colour), spec)))
    gray_model = ImageDataset([colour], Preprocess(size=(24, 32), channels=1, mean=(0.5,), std=(0.5,)), cache=False)
    assert gray_model[0].shape == (1, 24, 32)


def test_image_dataset_corrupt_file_is_user_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    with pytest.raises(UserError, match="bad.png"):
        ImageDataset([bad], Preprocess(size=(16, 16)))[0]


def test_load_mask_roi_resize_and_absent(tmp_path: Path) -> None:
    m = np.zeros((40, 60), np.uint8)
    m[10:20, 30:50] = 255
    path = _write(tmp_path / "m_mask.png", m)
    spec = Preprocess(size=(20, 30), roi=(20, 0, 30, 40))  # crop 40 x 30, then half the height
    out = load_mask(path, spec, (40, 60, 3))
    assert out.dtype == np.float32 and out.shape == (20, 30) and set(np.unique(out)) == {0.0, 1.0}
    expected = np.zeros((20, 30), np.float32)
    expected[5:10, 10:30] = 1.0  # columns 30..50 -> 10..30 in the crop, rows 10..20 -> 5..10
    assert np.array_equal(out, expected)
    assert np.array_equal(load_mask(None, spec, (40, 60)), np.zeros((20, 30), np.float32))
    with pytest.raises(UserError, match="image's size"):
        load_mask(path, spec, (41, 60))


def test_load_mask_moves_with_its_images_pose(tmp_path: Path) -> None:
    m = np.zeros((40, 60), np.uint8)
    m[10:20, 30:40] = 255
    path = _write(tmp_path / "m_mask.png", m)
    spec = Preprocess(size=(40, 60), register="rigid")
    shift = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, -3.0]])  # 5 px right, 3 px up
    expected = np.zeros((40, 60), np.float32)
    expected[7:17, 35:45] = 1.0
    assert np.array_equal(load_mask(path, spec, (40, 60), shift), expected)
    with pytest.raises(ValueError, match="pose"):
        load_mask(path, spec, (40, 60))


# ---- the shared data sets -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "train", "test"),
    [
        ("mvtec_bottle", 209, {"good": 20, "broken_large": 20, "broken_small": 22, "contamination": 21}),
        ("magnetic_tile", 762, {"good": 190, "blowhole": 115, "break": 85, "crack": 57, "fray": 32, "uneven": 103}),
    ],
)
def test_shared_datasets_counts(name: str, train: int, test: dict[str, int]) -> None:
    root = DATA / name
    if not root.is_dir():
        pytest.skip(f"{root} not present (the shared data sets live next to the repository)")
    index = scan_dataset(root)
    assert len(index.train_good) == train
    assert {f"test/{k}": v for k, v in sorted(test.items())} == {k: v for k, v in index.counts().items() if k != "train/good"}
    assert sum(s.label for s in index.test) == sum(v for k, v in test.items() if k != "good")
    assert all(s.mask is not None for s in index.test if s.label == 1) and index.warnings == []


def test_one_image_reader_for_training_and_the_line(tmp_path: Path) -> None:
    """A 16-bit PNG and a TIFF read the same through training's loader and the line's sources
    (was: 3,067 of 12,288 values one apart, and .tif read at runtime but skipped in training)."""
    from edgefreq.runtime.sources.files import ImageFileSource, ImageFolderSource

    rng = np.random.default_rng(7)
    wide = rng.integers(0, 65536, (64, 64, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "a.png"), wide)
    cv2.imwrite(str(tmp_path / "b.tif"), wide[:, :, 0].astype(np.uint8))
    train_side = [load_image(tmp_path / "a.png"), load_image(tmp_path / "b.tif")]
    folder = ImageFolderSource("folder", tmp_path, loop=1)
    line_side = [folder.read(), folder.read()]
    assert all(np.array_equal(a, b) for a, b in zip(train_side, line_side))
    assert np.array_equal(ImageFileSource("file", tmp_path / "a.png", loop=1).read(), train_side[0])
    (tmp_path / "train" / "good").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "train" / "good" / "c.tif"), wide[:, :, 1].astype(np.uint8))
    assert [p.name for p in scan_dataset(tmp_path).train_good] == ["c.tif"]
