"""A synthetic inspection line: round caps passing on a conveyor, a few of them defective.

`SyntheticLine(size, seed, defect_rate).frame(index) -> (image, truth)` is a pure function of
(seed, index): the same call always gives the same BGR uint8 image and label (0 good, 1 defect).
The product and the conveyor are fixed (they are "the line"); the seed only picks the stream of
per-frame randomness, so a model trained on seed 0 can be evaluated on seed 1 of the same line.

Every frame: a belt texture that moves with the index between two static rails, a cap (rim with
six notches, face with two concentric grooves, a hub, a printed arrow and bar code) with small
position / size / rotation jitter, a soft shadow and highlight, a random lighting gain and
gradient, and Gaussian sensor noise (a random window of a fixed noise field, for speed). A defective frame is the same frame plus one defect from
`DEFECT_KINDS`, sized relative to the cap so it stays visible but small at 64 x 64 model input.

Three independent random streams per frame (defect coin, pose/lighting/noise, defect geometry)
make `render(index, kind)` show the very same part with or without any chosen defect.
scripts/make_embedded.py renders its training, validation and test sets with `SyntheticLine.render`.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from edgefreq.errors import UserError
from edgefreq.geometry import parse_size
from edgefreq.runtime.uri import Uri

from .base import Sample, Source
from .options import SourceOptions

DEFECT_KINDS = ("scratch", "dent", "missing_notch", "contamination")

_SHIFT = 4  # cv2 drawing with 4 fractional bits: sub-pixel positions
_ONE = 1 << _SHIFT
_LINE_SEED = 20240611  # fixed: the conveyor belt texture is part of the line, not of a stream
_NOTCHES = 6

# BGR colours of the product.
_RIM = (128, 132, 138)
_FACE = (176, 180, 185)
_GROOVE = (132, 136, 141)
_HUB = (198, 201, 205)
_SLOT = (66, 68, 72)
_PRINT = (142, 70, 36)
_CONTAMINANTS = ((48, 150, 62), (34, 112, 196), (150, 64, 148), (40, 44, 150))


def _pt(x: float, y: float) -> tuple[int, int]:
    """A sub-pixel point for cv2 drawing with `shift=_SHIFT`."""
    return round(x * _ONE), round(y * _ONE)


class SyntheticLine:
    """Deterministic frames of a conveyor line of round caps; see the module docstring."""

    def __init__(self, size: tuple[int, int] = (128, 128), seed: int = 0, defect_rate: float = 0.1) -> None:
        if len(size) != 2 or min(size) < 32:
            raise UserError(f"synthetic line: size must be (height, width) with both >= 32, got {size}")
        if not 0.0 <= defect_rate <= 1.0:
            raise UserError(f"synthetic line: defect_rate must be between 0 and 1, got {defect_rate}")
        if seed < 0:
            raise UserError(f"synthetic line: seed must be >= 0, got {seed}")
        self.size = (int(size[0]), int(size[1]))
        self.seed = int(seed)
        self.defect_rate = float(defect_rate)
        h, w = self.size
        self._scale = min(h, w)
        self._belt = self._make_belt(h, w)
        self._step = max(1, round(w * 0.023))  # belt travel per frame, pixels
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        self._gx = (xs - (w - 1) / 2) / (w / 2)
        self._gy = (ys - (h - 1) / 2) / (h / 2)
        # sensor noise: a random window of a fixed field (a fresh normal draw per frame costs 0.5 ms)
        self._noise = np.random.default_rng(_LINE_SEED + 1).standard_normal((2 * h, 2 * w, 3), dtype=np.float32)

    # ------------------------------------------------------------------ public
    def defect_kind(self, index: int) -> str | None:
        """The defect frame `index` carries, or None for a good part."""
        coin = np.random.default_rng([self.seed, index, 0])
        if coin.random() >= self.defect_rate:
            return None
        return DEFECT_KINDS[int(coin.integers(len(DEFECT_KINDS)))]

    def frame(self, index: int) -> tuple[np.ndarray, int]:
        """Frame `index` of this stream: (H x W x 3 uint8 BGR image, truth 0 good / 1 defect)."""
        kind = self.defect_kind(index)
        return self.render(index, kind), int(kind is not None)

    def render(self, index: int, kind: str | None) -> np.ndarray:
        """Frame `index` with defect `kind` forced (None = the good part); pose and noise unchanged."""
        if index < 0:
            raise UserError(f"synthetic line: frame index must be >= 0, got {index}")
        if kind is not None and kind not in DEFECT_KINDS:
            raise UserError(f"synthetic line: unknown defect kind {kind!r} (choose from {', '.join(DEFECT_KINDS)})")
        h, w = self.size
        s = self._scale
        rng = np.random.default_rng([self.seed, index, 1])
        cx = w / 2 + rng.uniform(-0.03, 0.03) * s
        cy = h / 2 + rng.uniform(-0.03, 0.03) * s
        radius = 0.32 * s * (1 + rng.uniform(-0.015, 0.015))
        theta = math.radians(rng.uniform(-10.0, 10.0))
        gain = rng.uniform(0.88, 1.12)
        tilt = rng.uniform(0.0, 0.12)
        tilt_dir = rng.uniform(0.0, 2 * math.pi)
        sigma = rng.uniform(1.5, 3.5)
        ny, nx = int(rng.integers(h)), int(rng.integers(w))

        offset = (index * self._step) % w
        img = np.ascontiguousarray(self._belt[:, w - offset : 2 * w - offset])
        self._scale_disk(img, cx + 0.06 * radius, cy + 0.09 * radius, 1.02 * radius, 0.55)

        missing = -1
        defect_rng = np.random.default_rng([self.seed, index, 2])
        if kind == "missing_notch":
            missing = int(defect_rng.integers(_NOTCHES))
        self._draw_cap(img, cx, cy, radius, theta, missing)
        self._scale_disk(img, cx - 0.34 * radius, cy - 0.36 * radius, 0.2 * radius, 1.16)
        if kind in ("scratch", "dent", "contamination"):
            getattr(self, f"_draw_{kind}")(img, cx, cy, radius, defect_rng)

        light = cv2.addWeighted(self._gx, gain * tilt * math.cos(tilt_dir), self._gy, gain * tilt * math.sin(tilt_dir), gain)
        out = cv2.multiply(img, cv2.merge([light, light, light]), dtype=cv2.CV_32F)
        out = cv2.scaleAdd(self._noise[ny : ny + h, nx : nx + w], sigma, out)
        np.clip(out, 0, 255, out=out)
        return out.astype(np.uint8)

    # ------------------------------------------------------------------ the line
    @staticmethod
    def _make_belt(h: int, w: int) -> np.ndarray:
        """The belt between two rails, two periods wide so any horizontal shift is one slice."""
        rng = np.random.default_rng(_LINE_SEED)
        base = np.full((h, w), 60.0, np.float32)
        base += rng.normal(0, 6, (h, w)).astype(np.float32)
        base += rng.normal(0, 4, (1, w)).astype(np.float32)  # streaks across the belt
        pitch = max(4, w // 8)
        for x in range(0, w, pitch):  # slats, periodic in w
            base[:, x : x + max(1, pitch // 6)] -= 22
        warm = np.array([0, 2, 4], np.float32)  # slightly warm rubber
        belt = np.clip(base[:, :, None] + warm, 0, 255).astype(np.uint8)
        rail = max(2, round(h * 0.07))
        rail_shade = np.linspace(170, 120, rail, dtype=np.float32)[:, None, None]
        belt[:rail] = np.clip(rail_shade + rng.normal(0, 3, (rail, w, 1)), 0, 255).astype(np.uint8)
        belt[h - rail :] = belt[:rail][::-1]
        belt[rail] = belt[h - rail - 1] = 30
        return np.concatenate([belt, belt], axis=1)

    @staticmethod
    def _scale_disk(img: np.ndarray, cx: float, cy: float, r: float, factor: float) -> None:
        """Multiply the pixels of a soft-edged disk by `factor` (shadow < 1 < highlight), in place."""
        h, w = img.shape[:2]
        pad = int(r) + 3
        x0, y0 = max(0, int(cx) - pad), max(0, int(cy) - pad)
        x1, y1 = min(w, int(cx) + pad + 1), min(h, int(cy) + pad + 1)
        if x0 >= x1 or y0 >= y1:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.circle(mask, _pt(cx - x0, cy - y0), round(r * _ONE), 255, -1, cv2.LINE_AA, _SHIFT)
        mask = cv2.blur(mask, (5, 5))
        gain = cv2.addWeighted(mask, (factor - 1) / 255, mask, 0, 1, dtype=cv2.CV_32F)
        img[y0:y1, x0:x1] = cv2.multiply(img[y0:y1, x0:x1], cv2.merge([gain, gain, gain]), dtype=cv2.CV_8U)

    def _draw_cap(self, img: np.ndarray, cx: float, cy: float, r: float, theta: float, missing: int) -> None:
        aa = cv2.LINE_AA
        c = _pt(cx, cy)
        cv2.circle(img, c, round(r * _ONE), _RIM, -1, aa, _SHIFT)
        cv2.circle(img, c, round(0.86 * r * _ONE), _FACE, -1, aa, _SHIFT)
        groove = max(1, round(0.035 * r))
        cv2.circle(img, c, round(0.70 * r * _ONE), _GROOVE, groove, aa, _SHIFT)
        cv2.circle(img, c, round(0.46 * r * _ONE), _GROOVE, groove, aa, _SHIFT)
        cv2.circle(img, c, round(0.22 * r * _ONE), _HUB, -1, aa, _SHIFT)
        cv2.circle(img, c, round(0.22 * r * _ONE), _GROOVE, 1, aa, _SHIFT)

        def polar(rho: float, ang: float) -> tuple[float, float]:
            return cx + rho * r * math.cos(ang), cy + rho * r * math.sin(ang)

        half = 0.08 / 0.93  # notch half-width as an angle at the middle of the rim
        for k in range(_NOTCHES):
            if k == missing:
                continue
            a = theta + 2 * math.pi * k / _NOTCHES
            corners = [polar(0.87, a - half), polar(1.01, a - half * 0.9), polar(1.01, a + half * 0.9), polar(0.87, a + half)]
            cv2.fillPoly(img, [np.array([_pt(*p) for p in corners], np.int32)], _SLOT, aa, _SHIFT)

        # printed arrow between the grooves, pointing along the rim, between two notches
        a = theta + math.pi / _NOTCHES
        arrow = [polar(0.58, a + 0.32), polar(0.50, a + 0.05), polar(0.66, a + 0.05)]
        cv2.fillPoly(img, [np.array([_pt(*p) for p in arrow], np.int32)], _PRINT, aa, _SHIFT)
        cv2.line(img, _pt(*polar(0.58, a + 0.08)), _pt(*polar(0.58, a - 0.30)), _PRINT, max(1, round(0.04 * r)), aa, _SHIFT)
        # printed bar code on the opposite side
        b = a + math.pi
        for j, (da, length) in enumerate(((-0.18, 0.16), (-0.09, 0.10), (0.0, 0.16), (0.09, 0.07), (0.18, 0.14))):
            ang = b + da
            width = max(1, round((0.035 if j % 2 else 0.05) * r))
            cv2.line(img, _pt(*polar(0.58 - length / 2, ang)), _pt(*polar(0.58 + length / 2, ang)), _PRINT, width, aa, _SHIFT)

    # ------------------------------------------------------------------ defects
    @staticmethod
    def _spot(cx: float, cy: float, r: float, rng: np.random.Generator, reach: float) -> tuple[float, float]:
        """A random point on the cap face at most `reach` * r from the centre."""
        rho = reach * r * math.sqrt(rng.uniform(0.05, 1.0))
        ang = rng.uniform(0, 2 * math.pi)
        return cx + rho * math.cos(ang), cy + rho * math.sin(ang)

    def _draw_scratch(self, img: np.ndarray, cx: float, cy: float, r: float, rng: np.random.Generator) -> None:
        length = rng.uniform(0.35, 0.7) * r
        px, py = self._spot(cx, cy, r, rng, 0.84 - length / (2 * r))
        psi = rng.uniform(0, math.pi)
        dx, dy = math.cos(psi) * length / 2, math.sin(psi) * length / 2
        bend = rng.uniform(-0.12, 0.12) * length
        mid = (px - dy / (length / 2) * bend, py + dx / (length / 2) * bend)
        points = np.array([_pt(px - dx, py - dy), _pt(*mid), _pt(px + dx, py + dy)], np.int32)
        colour = (236, 238, 240) if rng.random() < 0.5 else (84, 84, 88)
        thickness = max(1, round(self._scale / 128 * rng.integers(1, 3)))
        cv2.polylines(img, [points], False, colour, thickness, cv2.LINE_AA, _SHIFT)

    def _draw_dent(self, img: np.ndarray, cx: float, cy: float, r: float, rng: np.random.Generator) -> None:
        px, py = self._spot(cx, cy, r, rng, 0.72)
        size = rng.uniform(0.08, 0.14) * r
        axes = (round(size * _ONE), round(size * rng.uniform(0.6, 0.9) * _ONE))
        angle = rng.uniform(0, 180)
        cv2.ellipse(img, _pt(px, py), axes, angle, 0, 360, (64, 66, 70), -1, cv2.LINE_AA, _SHIFT)
        # the lit lip of the dent, on the side facing the light (top left)
        cv2.ellipse(img, _pt(px + 0.25 * size, py + 0.25 * size), axes, 0, 180, 270, (226, 228, 230), 1, cv2.LINE_AA, _SHIFT)

    def _draw_contamination(self, img: np.ndarray, cx: float, cy: float, r: float, rng: np.random.Generator) -> None:
        px, py = self._spot(cx, cy, r, rng, 0.74)
        size = rng.uniform(0.08, 0.15) * r
        n = int(rng.integers(6, 9))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = size * rng.uniform(0.55, 1.0, n)
        points = np.array([_pt(px + q * math.cos(t), py + q * math.sin(t)) for q, t in zip(radii, angles)], np.int32)
        colour = _CONTAMINANTS[int(rng.integers(len(_CONTAMINANTS)))]
        cv2.fillPoly(img, [points], colour, cv2.LINE_AA, _SHIFT)


class SyntheticSource(Source):
    """`synthetic://` as a source: frames 0, 1, 2, ... of a SyntheticLine, never ending.

    read_sample() gives the image with its truth, 0 good / 1 defect; read() the image alone.
    """

    is_live = False

    def __init__(self, uri: str, line: SyntheticLine) -> None:
        super().__init__(uri)
        self.line, self._index = line, 0

    def read_sample(self) -> Sample:
        image, truth = self.line.frame(self._index)
        self._index += 1
        return Sample(image, truth)

    def read(self) -> np.ndarray:
        return self.read_sample().image

    def close(self) -> None:
        """Nothing to release."""

    def reopen(self) -> None:
        self._index = 0


SYNTHETIC_KEYS = ("seed", "defect_rate", "size")
SYNTHETIC_DEFAULT_SIZE = (128, 128)  # height, width


def open_synthetic(uri: Uri, options: SourceOptions) -> SyntheticSource:
    """synthetic://?seed=0&defect_rate=0.1&size=WIDTHxHEIGHT (default size: --resolution, else 128x128)."""
    if uri.location.strip("/"):
        raise uri.error("write options as a query, e.g. synthetic://?seed=0&defect_rate=0.1&size=128x128")
    values = uri.options(SYNTHETIC_KEYS)
    size = (options.height, options.width) if options.width else SYNTHETIC_DEFAULT_SIZE
    if "size" in values:
        try:
            width, height = parse_size(values["size"], "option size")
        except UserError as exc:
            raise uri.error(str(exc)) from None
        size = (height, width)
    seed = uri.number("seed", values.get("seed", "0"), int, 0, 2**63 - 1)
    defect_rate = uri.number("defect_rate", values.get("defect_rate", "0.1"), float, 0.0, 1.0)
    return SyntheticSource(uri.text, SyntheticLine(size, seed, defect_rate))
