"""A fake npm registry on disk, for the set-up fetches (3Dmol.js, MathJax): file:// URLs."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from pathlib import Path


def fake_registry(tmp_path: Path, package: str, version: str, files: dict[str, bytes],
                  corrupt: bool = False) -> str:
    """A registry serving one ``package@version`` whose tarball holds ``files`` (names under
    ``package/``); ``corrupt`` makes the registry's sha512 disagree with the tarball."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, blob in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    blob = buf.getvalue()
    (tmp_path / f"{package}.tgz").write_bytes(blob)
    digest = hashlib.sha512(blob + (b"x" if corrupt else b"")).digest()
    meta = {"dist": {"tarball": (tmp_path / f"{package}.tgz").as_uri(),
                     "integrity": "sha512-" + base64.b64encode(digest).decode()}}
    (tmp_path / package).mkdir(exist_ok=True)
    (tmp_path / package / version).write_text(json.dumps(meta))
    return tmp_path.as_uri()
