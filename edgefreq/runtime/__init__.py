"""The line: sources, capture, inspector, loop, sinks, backends.

OpenMP threads (torch's CPU kernels, AOTInductor .pt2 packages) busy-wait for each other by
default; on a shared or loaded CPU, a waiting thread takes the core its peer needs, and a 2 ms
model took ~650 ms a frame (benchmarks/results/reliability.md). The runtime asks libgomp to let
waiting threads sleep instead. libgomp reads OMP_WAIT_POLICY once, when torch loads it, so this
only takes effect when edgefreq.runtime is imported before torch (the CLI does); a value the
user set is kept.
"""

import os
import sys

if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
