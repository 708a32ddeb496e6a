"""`edgefreq cameras`: the GenICam (GigE Vision / USB3 Vision) cameras Aravis can see, with the URI
that opens each one in `edgefreq run --source`."""

from __future__ import annotations

import argparse
import json
import sys
from urllib.parse import quote

from edgefreq.runtime.sources.genicam import list_cameras

COLUMNS = ("uri", "vendor", "model", "serial_nbr", "protocol", "address")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the list as JSON (one object per camera)")


def run(args: argparse.Namespace) -> int:
    cameras = [{"uri": f"genicam://{quote(c['id'], safe='')}", **c} for c in list_cameras()]
    if args.json:
        print(json.dumps(cameras, indent=2))
    elif cameras:
        widths = {k: max(len(k), *(len(c[k]) for c in cameras)) for k in COLUMNS}
        for row in [dict(zip(COLUMNS, COLUMNS)), *cameras]:
            print("  ".join(row[k].ljust(widths[k]) for k in COLUMNS).rstrip())
    if not cameras:
        print(
            "no GenICam camera found (GigE Vision: camera and host on one subnet, UDP from the camera not "
            "firewalled; USB3 Vision: udev permission for the device)",
            file=sys.stderr,
        )
    return 0
