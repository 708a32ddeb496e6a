"""Sizes and regions written as text, one grammar for every command line.

    size    WxH       width x height in pixels: 1280x720
    region  X,Y,W,H   left, top, width, height in frame pixels: 120,80,400,300 (the order
                      Preprocess.roi and the sidecar's preprocess.roi hold)

Width always comes before height. Only the YAML config's preprocess.size is [H, W] (a tensor's
order); the README says which order each place uses.
"""

from __future__ import annotations

import re

from edgefreq.errors import UserError

_SIZE = re.compile(r"\s*(\d+)\s*[xX]\s*(\d+)\s*")
_ROI = re.compile(r"\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*")


def parse_size(text: str, what: str = "size") -> tuple[int, int]:
    """'1280x720' -> (1280, 720): (width, height), both at least 1."""
    match = _SIZE.fullmatch(str(text))
    if match is None or min(int(v) for v in match.groups()) < 1:
        raise UserError(f"{what} must be WIDTHxHEIGHT in pixels, both at least 1, e.g. 1280x720, got {text!r}")
    width, height = (int(v) for v in match.groups())
    return width, height


def parse_roi(text: str, what: str = "roi") -> tuple[int, int, int, int]:
    """'120,80,400,300' -> (120, 80, 400, 300): (x, y, width, height), x and y at least 0, width and height at least 1."""
    match = _ROI.fullmatch(str(text))
    if match is None:
        raise UserError(f"{what} must be X,Y,W,H in frame pixels (left, top, width, height), e.g. 120,80,400,300, got {text!r}")
    x, y, width, height = (int(v) for v in match.groups())
    if width < 1 or height < 1:
        raise UserError(f"{what} {text!r}: width and height must be at least 1")
    return x, y, width, height
