"""The option vocabulary the verbs share: one definition, one parser and one error for each.

    --batch N         images per engine call (run: up to N queued frames; calibrate, eval: N images)
    --batches LIST    batch sizes, comma-separated: bench times each one; build compiles MIN,OPT,MAX
    --device DEVICE   auto, cpu or cuda: where the model runs (auto: cuda when there is one)
    --size WxH        width x height in pixels (edgefreq.geometry)
    --roi X,Y,W,H     left, top, width, height in frame pixels (edgefreq.geometry)

A bad value raises UserError from its parser, so the command line ends in one line and exit 2,
before anything is opened or written. Not a verb: every verb module may import it, none imports
another verb.
"""

from __future__ import annotations

import argparse

from edgefreq.errors import UserError
from edgefreq.geometry import parse_roi, parse_size

DEVICES = ("auto", "cpu", "cuda")
# what --device selects for an engine (run, bench): edgefreq.runtime.backends.open_backend
ENGINE_DEVICE = ("the engine runs: ONNX Runtime's provider, the torch reference's device; plan, rtx and pt2 engines run "
                 "where they were built for, another device is refused")


def positive_int(flag: str):
    """The argparse type of an option that counts something: an integer of at least 1."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise UserError(f"{flag} must be a whole number of at least 1, got {text!r}") from None
        if value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}")
        return value

    return parse


def device(text: str) -> str:
    """The argparse type of --device: one of DEVICES."""
    value = text.strip().lower()
    if value not in DEVICES:
        raise UserError(f"--device must be {', '.join(DEVICES[:-1])} or {DEVICES[-1]}, got {text!r}")
    return value


def add_batch(p: argparse.ArgumentParser, default: int, what: str) -> None:
    """--batch N: images per engine call."""
    p.add_argument("--batch", type=positive_int("--batch"), default=default, metavar="N",
                   help=f"images per engine call: {what} (default {default})")


def add_device(p: argparse.ArgumentParser, what: str, default: str | None = "auto") -> None:
    """--device: auto, cpu or cuda; `what` says what runs there, `default` None leaves it to `what`."""
    shown = "" if default is None else f"; default {default}"
    p.add_argument("--device", type=device, default=default, metavar="{" + ",".join(DEVICES) + "}",
                   help=f"where {what} (auto: cuda when this machine has a GPU{shown})")


def size(flag: str):
    """The argparse type of a WxH size: (width, height)."""
    return lambda text: parse_size(text, flag)


def roi(flag: str):
    """The argparse type of an X,Y,W,H region: (x, y, width, height)."""
    return lambda text: parse_roi(text, flag)
