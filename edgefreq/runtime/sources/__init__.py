"""Frame sources: one URI grammar for every input (see `uri`), one `Source` interface."""

from .base import EndOfStream, Sample, Source
from .options import SourceOptions
from .synthetic import DEFECT_KINDS, SyntheticLine, SyntheticSource
from .uri import open_source

__all__ = [
    "DEFECT_KINDS",
    "EndOfStream",
    "Sample",
    "Source",
    "SourceOptions",
    "SyntheticLine",
    "SyntheticSource",
    "open_source",
]
