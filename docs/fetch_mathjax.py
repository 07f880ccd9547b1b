"""Set-up step for the course site: a local copy of MathJax, so its math renders offline.

    python docs/fetch_mathjax.py [--force]

Fetches the npm package ``mathjax`` (version ``VERSION``), checks the tarball against the
registry's sha512 (``eqhelpers._util.npm_files``, as ``fetch-3dmol`` does for 3Dmol.js), and
keeps what the site loads in ``docs/_static/mathjax/``: the TeX-to-HTML component, its fonts and
the TeX extensions it loads on demand. The copy is never committed (``.gitignore``); a manifest
of sha256 sums is written last, so a half-written or altered copy is detected and fetched again.
``install.sh`` runs this in its developer variant; ``docs/build.sh`` refuses to build without it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

VERSION = "3.2.2"
HERE = Path(__file__).resolve().parent
DEST = HERE / "_static" / "mathjax"
MANIFEST = "manifest.json"
ENTRY = "tex-chtml.js"


def wanted(name: str) -> bool:
    return name == f"es5/{ENTRY}" or name.startswith(("es5/output/chtml/fonts/woff-v2/",
                                                      "es5/input/tex/extensions/"))


def check(dest: Path = DEST) -> str | None:
    """Why the local copy cannot be used, or None when it is whole (every file's sha256)."""
    try:
        manifest = json.loads((dest / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"no complete MathJax copy in {dest} (run: python docs/fetch_mathjax.py)"
    if manifest.get("version") != VERSION:
        return f"{dest} holds MathJax {manifest.get('version')}, not {VERSION}"
    for name, sha in manifest["files"].items():
        path = dest / name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != sha:
            return f"{path} is missing or altered (run: python docs/fetch_mathjax.py --force)"
    return None


def fetch(force: bool = False, registry: str = "https://registry.npmjs.org",
          dest: Path = DEST) -> Path:
    from eqhelpers._util import npm_files

    if not force and check(dest) is None:
        return dest
    files = npm_files("mathjax", VERSION, wanted, registry=registry)
    entry = files.get(f"es5/{ENTRY}", b"")
    if b"MathJax" not in entry[:200000]:
        raise RuntimeError(f"mathjax {VERSION}: es5/{ENTRY} does not look like MathJax")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".mathjax-", dir=dest.parent))
    try:
        sums = {}
        for name, blob in files.items():
            rel = name.removeprefix("es5/")
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(blob)
            sums[rel] = hashlib.sha256(blob).hexdigest()
        (tmp / MANIFEST).write_text(json.dumps({"version": VERSION, "files": sums}, indent=1))
        old = dest.with_name(dest.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if dest.exists():
            dest.rename(old)  # the good copy is replaced only by a complete one
        tmp.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--force", action="store_true", help="fetch again even if the copy is whole")
    p.add_argument("--check", action="store_true", help="only say whether the copy is whole")
    a = p.parse_args(argv)
    if a.check:
        why = check()
        print(why or f"MathJax {VERSION}: {DEST} is whole")
        return 1 if why else 0
    try:
        path = fetch(force=a.force)
    except (OSError, RuntimeError) as exc:
        print(f"error: could not fetch MathJax {VERSION} from npm ({exc}); the course site "
              "cannot render math offline without it", file=sys.stderr)
        return 1
    print(f"MathJax {VERSION}: {path} ({len(json.loads((path / MANIFEST).read_text())['files'])} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
