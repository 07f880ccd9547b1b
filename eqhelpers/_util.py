"""Small shared helpers: device resolution, seeding, atomic file writes, input checks, the
source fingerprint that stamps executed notebooks."""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

# what the package's results depend on: its code and the results it ships (not static/, the
# fetched 3Dmol.js, and not caches)
_FINGERPRINTED = {".py", ".json", ".csv", ".npy", ".png", ".pt", ".md", ".txt"}


def source_fingerprint(root: str | os.PathLike | None = None) -> str:
    """A sha256 over the package's code and shipped results (relative paths and bytes, in sorted
    order): ``notebooks/execute_notebooks.py`` stamps it into every notebook it runs, and a test
    fails when a committed notebook's outputs were produced by other code."""
    import hashlib

    root = Path(root) if root is not None else Path(__file__).resolve().parent
    h = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in _FINGERPRINTED
                   and "__pycache__" not in p.parts and p.relative_to(root).parts[0] != "static")
    for p in files:
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:16]


def cells_fingerprint(cells) -> str:
    """A sha256 over a notebook's cells (type and source, in order; not outputs or metadata):
    ``notebooks/execute_notebooks.py`` stamps it beside :func:`source_fingerprint`, so a cell
    edited after the notebook ran is seen by the test that checks the stamp."""
    import hashlib
    import json

    h = hashlib.sha256()
    for c in cells:
        h.update(json.dumps([c["cell_type"], c["source"]], ensure_ascii=False).encode() + b"\0")
    return h.hexdigest()[:16]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) picks CUDA when present, else the CPU; anything else is passed to torch."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'") \
            from exc
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported: the package trains on 'cpu' or "
                         f"'cuda' (or 'auto')")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but CUDA is not available here")
    return dev


def available_memory() -> int | None:
    """Bytes of memory this process could still allocate: the smaller of the machine's available
    memory (``MemAvailable``) and the address-space limit (``ulimit -v``); None if unknown."""
    found = []
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError):
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            found.append(int(soft))
    except (ImportError, ValueError, OSError):
        pass
    return min(found) if found else None


def format_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"  # pragma: no cover


def check_fits(what: str, need: int, fix: str) -> None:
    """Refuse, before any work, ``need`` bytes that this machine cannot give (a MemoryError
    naming the estimate, what is available and ``fix``) instead of running until the kernel
    kills the process."""
    have = available_memory()
    if have is not None and need > have:
        raise MemoryError(f"{what} needs about {format_bytes(need)} of memory; this machine has "
                          f"{format_bytes(have)} available: {fix}")


def device_name(dev: torch.device | str) -> str:
    """A device as results record it: ``"cuda (NVIDIA H100 …)"`` or ``"cpu (2 threads)"``."""
    dev = torch.device(dev)
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator seeded with ``seed``."""
    seed = check_count("seed", seed, 0)  # one rule for every seed the package takes
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on ``device`` seeded with ``seed`` (batches are drawn where the data live)."""
    return torch.Generator(device=torch.device(device)).manual_seed(check_count("seed", seed, 0))


def cache_dir() -> Path:
    """``$EQHELPERS_CACHE`` (``~`` expanded), else ``~/.cache/eqhelpers``: data caches (tasks,
    trajectories)."""
    env = os.environ.get("EQHELPERS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "eqhelpers"


class OutputError(ValueError):
    """An output location that cannot be written (a file where a directory is wanted, no
    permission, a full disk): the message names the path and the fix."""


def ensure_output_dir(path: str | os.PathLike, what: str = "output directory") -> Path:
    """Make sure ``path`` is a directory this process can write to, before any work is done:
    created if missing; an existing file, a read-only directory or a full disk is an
    :class:`OutputError` naming the path and the fix."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is an existing file, not a directory: give a "
                          f"directory path (or move the file away)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{what} {path} is not writable ({exc.strerror or exc}): choose "
                          f"a directory you can write to") from exc
    return path


LOCK = ".eqhelpers.lock"

# the files that mark a *finished* run of each command, and (glob patterns) the other files such
# a run writes: a directory holding a run's files but none of its markers is an interrupted run
# (``.*.tmp``: the temp file of a write that was killed before its rename)
TEMP = ".*.tmp"
RUN_FILES = {
    "train": (("metrics.json",), ("best.pt", "history.json", "training.png", TEMP)),
    "discover": (("discovery.json", "summary.json"),
                 ("generators.npy", "discovery.png", "seed_*", TEMP)),
    "bench": (("bench.json",), ("bench.md", TEMP)),
    "sweep": (("sweep_config.json",), ()),  # a sweep resumes its directory: only its marker
}


@contextlib.contextmanager
def dir_lock(out: str | os.PathLike, what: str):
    """Hold an exclusive lock on ``<out>/.eqhelpers.lock`` (``flock``) while a run writes there:
    a second run into the same directory — of any command — is refused, naming the holder,
    instead of mixing its files in. The kernel drops the lock when the process ends, however it
    ends (Ctrl-C, a kill, a crash), so a stopped run never leaves a stale lock."""
    with _flock(Path(out) / LOCK, Path(out), what):
        yield


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, what: str, wait: float = 0.0):
    """:func:`dir_lock` for one file that several runs read, extend and rewrite (a benchmark's
    resumable results, in a directory other results share): the lock is ``.<name>.lock`` beside
    it, and a second writer of the same file is refused while the first holds it — at once, or
    after ``wait`` seconds (for a lock held only while a file is read, merged and rewritten)."""
    path = Path(path)
    with _flock(path.with_name(f".{path.name}.lock"), path, what, wait):
        yield


@contextlib.contextmanager
def _flock(lock: Path, target: Path, what: str, wait: float = 0.0):
    if not (wait >= 0 and math.isfinite(wait)):  # refused on every platform, with or without flock
        raise ValueError(f"wait must be a finite number of seconds >= 0, got {wait!r}")
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock (Windows): run unguarded, say so
        import warnings

        warnings.warn(f"no file locking on this platform: do not run two commands into "
                      f"{target} at once", stacklevel=4)
        yield
        return
    fh = open(lock, "a+", encoding="utf-8")
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                fh.seek(0)
                who = fh.read().strip() or "unknown"
                raise OutputError(f"another run ({who}) is writing to {target}: wait for it to "
                                  f"finish, or use another output") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{what}, pid {os.getpid()} on {socket.gethostname()}, "
                 f"since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        fh.flush()
        yield
    finally:
        fh.close()  # releases the lock


def _move_aside(out: Path, entries: list[Path], label: str) -> Path:
    """Move ``entries`` of ``out`` into a new ``out/<label>-<time>/`` (never deleting)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = out / f"{label}-{stamp}"
    n = 1
    while aside.exists():
        aside = out / f"{label}-{stamp}-{n}"
        n += 1
    aside.mkdir()
    for e in entries:
        os.replace(e, aside / e.name)
    return aside


@contextlib.contextmanager
def claim_output(out: str | os.PathLike, kind: str, overwrite: bool = False,
                 what: str | None = None, label: str = "--out"):
    """Own ``out`` for one run of command ``kind`` (``RUN_FILES``) while the body writes there.

    The rule, the same for every command that writes:

    - a run holds the directory's lock (:func:`dir_lock`) while it writes: a concurrent run into
      it is refused;
    - a directory holding a *finished* run of another command is refused;
    - a finished run of the same command is refused unless ``overwrite``; with it, the old run's
      files are first moved into ``out/replaced-<time>/`` (kept, never mixed with the new ones);
    - an *interrupted* run's files (its files without its marker, no run holding the lock) are
      moved into ``out/interrupted-<time>/``, with a warning, before the new run writes.

    Sweeps (``kind="sweep"``) resume their own directory instead (their points are checked
    one by one), so for them only the lock and the other-command rule apply. ``label`` names
    ``out`` in errors.
    """
    import warnings

    out = ensure_output_dir(out, label)
    with dir_lock(out, what or kind):
        for other, (markers, _) in RUN_FILES.items():
            done = [m for m in markers if (out / m).exists()]
            if other != kind and done:
                raise OutputError(f"{out} holds a finished {other} run ({done[0]}): use another "
                                  f"output directory for this {kind} run")
        markers, files = RUN_FILES[kind]
        done = [m for m in markers if (out / m).exists()]
        mine = [p for pattern in (*markers, *files) for p in sorted(out.glob(pattern))]
        resumes = kind == "sweep"  # a sweep resumes its own directory, point by point
        if resumes:  # a killed write's temp files: incomplete by construction, no one's result
            for tmp in [*out.glob(TEMP), *out.glob(f"*/{TEMP}")]:
                tmp.unlink()
        if done and not resumes:
            if not overwrite:
                raise OutputError(
                    f"{out} holds a finished {kind} run ({done[0]}): pass --overwrite to "
                    f"replace it (the old run is kept in {out}/replaced-<time>/), or use "
                    f"another output directory")
            aside = _move_aside(out, mine, "replaced")
            warnings.warn(f"the earlier {kind} run in {out} was moved to {aside.name}/",
                          stacklevel=3)
        elif mine and not resumes:
            aside = _move_aside(out, mine, "interrupted")
            warnings.warn(f"{out} held an interrupted {kind} run ("
                          f"{', '.join(p.name for p in mine)}, no {markers[0]}): moved it to "
                          f"{aside.name}/", stacklevel=3)
        yield out


def _write_error(path: Path, exc: BaseException) -> OutputError | None:
    """The clear error for a write that failed for want of room (a full disk, a file-size limit,
    a quota) or permission; None for anything else. torch reports these as a RuntimeError from
    its zip writer ("enforce fail … PytorchStreamWriter failed writing file")."""
    import errno

    if isinstance(exc, OSError):
        reasons = {errno.ENOSPC: "the disk is full", errno.EFBIG: "the file-size limit "
                   "(ulimit -f) was reached", errno.EDQUOT: "the disk quota is exceeded",
                   errno.EACCES: "permission denied", errno.EROFS: "the file system is read-only"}
        why = reasons.get(exc.errno, exc.strerror or str(exc))
    elif isinstance(exc, RuntimeError) and ("enforce fail" in str(exc) or "failed writing"
                                            in str(exc) or "unexpected pos" in str(exc)):
        why = "the write stopped short (a full disk or a file-size limit, ulimit -f)"
    else:
        return None
    return OutputError(f"could not write {path}: {why}. Nothing already saved was changed "
                       f"(the file is written to a temp file, then renamed): free space or "
                       f"choose another output directory")


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> Path:
    """Call ``write(tmp_path)`` then rename the temp file onto ``path``.

    A crash mid-write never leaves a half-written ``path``; an existing file is replaced only
    once the new one is complete. A write that fails for want of room (full disk, ``ulimit -f``,
    quota) or permission is an :class:`OutputError` naming the path and the cause.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file ordinary permissions
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        clear = _write_error(path, exc) if isinstance(exc, Exception) else None
        if clear is not None:
            raise clear from exc
        raise
    return path


def npm_files(package: str, version: str, want: Callable[[str], bool],
              registry: str = "https://registry.npmjs.org", timeout: float = 60.0) -> dict[str, bytes]:
    """The files of an npm package's tarball for which ``want(name)`` is true (``name`` without
    the tarball's ``package/`` prefix), after checking the tarball against the registry's
    integrity hash (sha512). Set-up only: the one place the project downloads a file; nothing
    is written here (the callers write atomically), so a bad download changes nothing on disk."""
    import base64
    import hashlib
    import io
    import tarfile
    import urllib.request

    with urllib.request.urlopen(f"{registry}/{package}/{version}", timeout=timeout) as r:
        dist = json.load(r)["dist"]
    with urllib.request.urlopen(dist["tarball"], timeout=timeout) as r:
        blob = r.read()
    algo, _, expect = dist["integrity"].partition("-")
    got = base64.b64encode(hashlib.new(algo, blob).digest()).decode()
    if got != expect:
        raise RuntimeError(f"{package} {version}: the tarball's {algo} does not match the registry's")
    out = {}
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        for member in tar.getmembers():
            name = member.name.partition("/")[2]
            if member.isfile() and ".." not in Path(name).parts and want(name):
                out[name] = tar.extractfile(member).read()
    if not out:
        raise RuntimeError(f"{package} {version}: none of the wanted files is in its tarball")
    return out


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


# -- integrity: what is read back is what was written ------------------------------------------

CHECKSUM = "sha256"  # the key under which results, caches and checkpoints carry their digest


def digest(obj: Any) -> str:
    """A sha256 over a nested structure of dicts, lists, tensors, arrays and plain values (keys
    in sorted order; a tensor's dtype, shape and bytes): the checksum that caches, checkpoints
    and results carry, so a file changed after it was written (a flipped bit, an edit) is seen
    on read."""
    import hashlib

    h = hashlib.sha256()

    def feed(x: Any) -> None:
        if isinstance(x, dict):
            h.update(b"{")
            for k in sorted(x, key=str):
                h.update(json.dumps(str(k)).encode() + b":")
                feed(x[k])
            h.update(b"}")
        elif isinstance(x, (list, tuple)):
            h.update(b"[")
            for v in x:
                feed(v)
                h.update(b",")
            h.update(b"]")
        elif isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(x, np.ndarray):
            a = np.ascontiguousarray(x)
            h.update(f"A{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        else:
            h.update(json.dumps(x, default=_json_default, allow_nan=True).encode())

    feed(obj)
    return h.hexdigest()


def check_digest(blob: dict, payload: Any, what: str) -> None:
    """Raise a ValueError when ``blob`` carries a checksum that ``payload`` does not match.
    (Files written before checksums carry none: they are validated in full instead.)"""
    want = blob.get(CHECKSUM)
    if want is not None and want != digest(payload):
        raise ValueError(f"{what}: its checksum does not match its contents (changed after it "
                         f"was written: a damaged disk, a copy cut short, or an edit)")


def _strict(x: Any) -> Any:
    """JSON-ready: NaN and ±inf become the strings "NaN", "Infinity", "-Infinity" (standard
    JSON has no such numbers, and a reader must not take them for measurements)."""
    if isinstance(x, dict):
        return {k: _strict(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_strict(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return "NaN" if x != x else ("Infinity" if x > 0 else "-Infinity")
    return x


def atomic_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as JSON atomically: strict JSON (a non-finite number is written as a string,
    never as a bare NaN), and a dict carries its checksum under ``"sha256"``
    (:func:`read_json` checks it)."""
    norm = _strict(json.loads(json.dumps(obj, default=_json_default)))
    if isinstance(norm, dict):
        norm.pop(CHECKSUM, None)
        norm[CHECKSUM] = digest(norm)

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(norm, fh, indent=2, sort_keys=True, allow_nan=False)
            fh.write("\n")

    return atomic_write(path, write)


def _no_constant(name: str):
    raise ValueError(f"it holds a bare {name}: a non-finite number, which is not JSON and not "
                     f"a measurement")


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """Read a JSON file written by :func:`atomic_json`: bare NaN or Infinity refused, the
    checksum (when it has one) verified and removed. Any problem is a ValueError naming the file
    (a missing file stays FileNotFoundError)."""
    path = Path(path)
    text = path.read_bytes()
    try:
        blob = json.loads(text.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} {path} is not valid JSON: {exc}") from exc
    if isinstance(blob, dict) and CHECKSUM in blob:
        want = blob.pop(CHECKSUM)
        if want != digest(blob):
            raise ValueError(f"{what} {path}: its checksum does not match its contents (changed "
                             f"after it was written: a damaged disk, a copy cut short, or an "
                             f"edit)")
    return blob


def _json_default(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, (Path, torch.device, torch.dtype)):
        return str(x)
    raise TypeError(f"cannot serialise {type(x).__name__} to JSON")


def quarantine(path: Path, what: str, exc: Exception, action: str,
               seen: os.stat_result | None = None) -> Path | None:
    """Move a corrupt file aside (never delete it) and warn, naming the file and the problem.

    ``seen``: the file's ``os.stat`` taken before it was read. Readers race: when the file at
    ``path`` is no longer the one that was read (another process already moved it aside, or
    wrote a fresh one in its place), nothing is moved — a good new file is never quarantined —
    and None is returned; the caller then regenerates or reads again, as it would anyway."""
    import warnings

    if seen is not None:
        try:
            now = os.stat(path)
        except FileNotFoundError:
            return None  # another reader moved it aside first
        if (now.st_ino, now.st_size, now.st_mtime_ns) != (seen.st_ino, seen.st_size,
                                                          seen.st_mtime_ns):
            return None  # replaced since it was read: not the corrupt file
    stamp = int(time.time() * 1000)
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    while aside.exists():  # never overwrite an earlier kept copy
        stamp += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return None  # another reader moved it aside first
    warnings.warn(f"{what} {path} is corrupt ({exc}); moved it to {aside.name} and {action}",
                  stacklevel=3)
    return aside


def chunk_sizes(n: int, size: int) -> list[int]:
    """Split n items into chunks of ``size`` (the last one smaller): sizes for ``Tensor.split``."""
    return [size] * (n // size) + ([n % size] if n % size else [])


def check_finite(name: str, x: torch.Tensor) -> None:
    """Raise a ValueError naming ``name`` if ``x`` holds NaN or infinity."""
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        n_bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} contains {n_bad} non-finite value(s) (NaN or inf)")


def check_count(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int ≥ ``minimum``; anything else (0, a negative, a float, a bool, None) is
    a ValueError naming ``name``: never replaced by a default."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_bool(name: str, value) -> bool:
    """``value`` if it is True or False; anything else (1, "no", None) is a TypeError naming
    ``name`` — a string such as "no" would otherwise read as true."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_unique(name: str, values) -> list:
    """``values`` as a list, each given once; a repeat is a ValueError naming it (a seed given
    twice would count as two seeds in a mean ± std)."""
    values = list(values)
    seen = [v for i, v in enumerate(values) if v in values[:i]]
    if seen:
        raise ValueError(f"{name} repeat {seen}: each must be given once")
    return values


def check_positive(name: str, value) -> float:
    """``value`` as a finite float > 0, else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_weight(name: str, value: float) -> float:
    """``value`` as a finite float >= 0 (a weight, a rate that may be off), else a ValueError
    naming ``name`` (a bool or a string too, not converted)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def format_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A markdown table. ``columns``: (key, header, format spec such as ".3g" or "")."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = []
    for r in rows:
        cells = []
        for key, _, fmt in columns:
            v = r.get(key)
            if v is None:
                cells.append("–")
            elif fmt and isinstance(v, (int, float)):
                cells.append(format(v, fmt))
            else:
                cells.append(str(v))
        body.append("| " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *body])
