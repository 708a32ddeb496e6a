"""CI on a Python without torch (3.10, JetPack 6's Python): what can be checked there, checked.

torch for 3.10 comes from the registry only as a multi-GB CUDA build, so the 3.10 venv of CI has
every dependency except torch and triton. This script, run by that venv's python from the repo root:

1. byte-compiles every Python file of the repository (syntax of the running version);
2. imports every module of the installed package; a module may only fail with the torch / triton
   import it needs (listed), anything else fails the run;
3. runs pytest on every test file that imports without torch (listed with the rest).

Exit status: non-zero when any step fails. Prints one summary line per step.

    python3.10 .ci/torchfree.py            # the checks, in the torch-free venv
    python3.11 .ci/torchfree.py requirements  # what that venv installs: pyproject's dependencies and
                                              # its dev extra, torch and triton left out (needs tomllib)
"""

from __future__ import annotations

import compileall
import importlib
import re
import subprocess
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("edgefreq", "kernels", "export", "calibration", "benchmarks", "tests", "scripts", ".ci")
HEAVY = {"torch", "triton"}  # not installed in this venv
PACKAGES = {"edgefreq": "edgefreq", "kernels": "edgefreq.kernels", "export": "edgefreq.export", "calibration": "edgefreq.calibration"}


def missing_heavy(exc: BaseException) -> str | None:
    """'torch' when exc is the ImportError of a module this venv leaves out, else None."""
    if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.split(".")[0] in HEAVY:
        return exc.name.split(".")[0]
    return None


def compile_all() -> bool:
    ok = all(compileall.compile_dir(str(ROOT / f), quiet=1, legacy=False) for f in FOLDERS if (ROOT / f).is_dir())
    print(f"byte-compile ({sys.version.split()[0]}): {'ok' if ok else 'FAILED'} ({', '.join(FOLDERS)})")
    return ok


def module_names() -> list[str]:
    """Every module of the distribution, from its folders (pyproject's package-dir), __main__ left out (it runs the CLI)."""
    names = []
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__main__":
                continue
            names.append(".".join((package, *parts[:-1])) if parts[-1] == "__init__" else ".".join((package, *parts)))
    return names


def import_all() -> bool:
    names = module_names()
    imported, need, failed = [], [], []
    for name in names:
        try:
            importlib.import_module(name)
            imported.append(name)
        except Exception as exc:  # noqa: BLE001 - every failure is reported, the heavy ones are allowed
            if missing_heavy(exc):
                need.append(name)
            else:
                failed.append(name)
                traceback.print_exc()
    print(f"import: {len(imported)} modules import without torch, {len(need)} need torch / triton, {len(failed)} FAILED")
    print(f"  without torch: {', '.join(imported)}")
    if failed:
        print(f"  FAILED: {', '.join(failed)}")
    return not failed


def torch_free_tests() -> list[str]:
    sys.path.insert(0, str(ROOT / "tests"))
    free, need = [], []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        try:
            importlib.import_module(path.stem)
            free.append(str(path.relative_to(ROOT)))
        except Exception as exc:  # noqa: BLE001
            if not missing_heavy(exc):
                raise
            need.append(path.stem)
    print(f"tests: {len(free)} files run without torch, {len(need)} need it ({', '.join(need)})")
    return free


def requirements() -> list[str]:
    """pyproject's dependencies + the dev extra (self-references expanded), without HEAVY."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras, found, todo = project["optional-dependencies"], list(project["dependencies"]), ["dev"]
    while todo:
        for item in extras[todo.pop()]:
            if item.startswith(project["name"] + "["):
                todo += item[len(project["name"]) + 1 : -1].split(",")
            elif item not in found:
                found.append(item)
    return [r for r in found if re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() not in HEAVY]


def main() -> int:
    if sys.argv[1:] == ["requirements"]:
        print("\n".join(requirements()))
        return 0
    ok = compile_all() and import_all()
    if not ok:
        return 1
    tests = torch_free_tests()
    if not tests:
        print("tests: none runs without torch")
        return 1
    return subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
