"""The MVTec AD folder layout edgefreq reads:

    ROOT/train/good/*                            good images (training + calibration)
    ROOT/test/good/*                             good test images          (label 0)
    ROOT/test/<defect>/*                         defective test images     (label 1)
    ROOT/ground_truth/<defect>/<stem>_mask.png   defect masks, the image's size

Labels come from the folder name only: `good` is 0, every other folder is a defect and 1
(defect = positive), whatever the sort order of the folder names. A line's own data set may
have only train/good; the test list is then empty.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from edgefreq.errors import UserError

from edgefreq.image_file import is_image_file

GOOD = "good"
MASK_SUFFIX = "_mask"


@dataclass(frozen=True)
class Sample:
    """One test image: label 0 good, 1 defect; `defect` is 'good' or the defect folder's name."""

    path: Path
    label: int
    defect: str
    mask: Path | None = None


@dataclass
class DatasetIndex:
    """What `scan_dataset` found; `warnings` lists what the caller should print."""

    root: Path
    train_good: list[Path]
    test: list[Sample]
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Images per group: 'train/good', then 'test/<folder>' for every test folder."""
        per_folder = Counter(s.defect for s in self.test)
        return {"train/good": len(self.train_good)} | {f"test/{k}": per_folder[k] for k in sorted(per_folder)}


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))


def _subfolders(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _masks(root: Path, defects: set[str]) -> dict[tuple[str, str], Path]:
    """(defect, image stem) -> mask path; a mask folder or file without its images is an error."""
    masks: dict[tuple[str, str], Path] = {}
    for folder in _subfolders(root / "ground_truth"):
        if folder.name == GOOD:
            raise UserError(f"{folder}: good images have no masks; remove this folder")
        if folder.name not in defects:
            raise UserError(
                f"{folder}: masks for {folder.name!r} but there is no {root / 'test' / folder.name} folder; "
                "add the images or remove the masks"
            )
        for mask in _images(folder):
            if not mask.stem.endswith(MASK_SUFFIX):
                raise UserError(f"{mask}: a mask file must be named <image stem>{MASK_SUFFIX}.png")
            key = (folder.name, mask.stem[: -len(MASK_SUFFIX)])
            if key in masks:
                raise UserError(f"{mask}: a second mask for the same image as {masks[key]}; keep one")
            masks[key] = mask
    return masks


def scan_dataset(root: str | Path) -> DatasetIndex:
    """Index a data set in the MVTec AD layout (see the module docstring); files sorted by name.

    Image extensions: png, jpg, jpeg, bmp, tif, tiff in any case; other files are ignored. Defect images
    without a mask are kept and listed in `warnings`; a mask without its image is an error.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: data set folder not found")
    good_dir = root / "train" / GOOD
    if not good_dir.is_dir():
        raise UserError(f"{root}: no train/good folder; put the good training images in {good_dir}")
    train_good = _images(good_dir)
    if not train_good:
        raise UserError(f"{good_dir}: no images (png, jpg, jpeg, bmp or tif); add good images of the part")

    warnings: list[str] = []
    test_dirs = _subfolders(root / "test")
    masks = _masks(root, {d.name for d in test_dirs if d.name != GOOD})
    test: list[Sample] = []
    unmasked: list[Path] = []
    used: set[tuple[str, str]] = set()
    for folder in test_dirs:
        images = _images(folder)
        if not images:
            warnings.append(f"{folder}: no images, ignored")
            continue
        if folder.name == GOOD:
            test.extend(Sample(p, 0, GOOD) for p in images)
            continue
        stems = Counter(p.stem for p in images)
        for p in images:
            if stems[p.stem] > 1:
                raise UserError(f"{p}: another image in {folder} has the same name stem {p.stem!r}; masks would be ambiguous")
            mask = masks.get((folder.name, p.stem))
            if mask is None:
                unmasked.append(p)
            else:
                used.add((folder.name, p.stem))
            test.append(Sample(p, 1, folder.name, mask))
    if unmasked and not masks:
        warnings.append(f"{root}: no defect masks (no ground_truth/ folder): image-level evaluation only")
    elif unmasked:
        more = f" (and {len(unmasked) - 1} more)" if len(unmasked) > 1 else ""
        warnings.append(f"{unmasked[0]}: defect image without a mask (ground_truth/<defect>/<stem>{MASK_SUFFIX}.png){more}")
    orphans = sorted(set(masks) - used)
    if orphans:
        mask = masks[orphans[0]]
        more = f" (and {len(orphans) - 1} more)" if len(orphans) > 1 else ""
        raise UserError(f"{mask}: mask without its image test/{orphans[0][0]}/{orphans[0][1]}.*{more}; add the image or remove the mask")
    return DatasetIndex(root=root, train_good=train_good, test=test, warnings=warnings)
