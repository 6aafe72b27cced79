"""Results files: the run header (provenance), safe reading, one locked writer.

A results file (``score --out``, ``run --out-dir``'s ``pairs.jsonl``) is JSON
Lines. Its first line is the run header, ``{"editmetrics_run": {...}}``: the
editmetrics version, the metric specs, every score-affecting setting, weight
fingerprints, the pairs file's path and SHA-256, and the loaded plugins'
versions (docs/records.md). Every other line is one record's row.

Every reader goes through ``read_results`` (rows only) or ``read_run``
(header + rows): the header is skipped, a torn last line (no newline: a crash
mid-write) is ignored, and a corrupt line anywhere else is an error naming
its line number, never a silent loss.

``ResultsWriter`` is the only writer: it takes an exclusive ``flock`` on the
file (a second writer is refused, naming the holder), refuses a file that is
not an editmetrics results file, refuses ``--resume`` of another run (the
headers differ: message lists what), repairs a torn last line and nothing
else, and writes each row as one ASCII JSON line (``ensure_ascii``: unpaired
surrogates become ``\\udXXX`` escapes, so the file is always valid UTF-8).
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import socket
import stat
from typing import Any, Iterator

HEADER_KEY = "editmetrics_run"
FORMAT = 1

# Settings that cannot change a score: where caches live, how work is split.
# Everything else a run was given is recorded and compared on --resume.
# (The declared-settings registry replaces this set: see score_affecting_settings.)
NOT_SCORE_AFFECTING = frozenset({
    "progress", "executor", "workers", "batch_size", "ray_address", "ray_workers",
    "feature_cache", "feature_memory", "feature_batch_size", "bpm_parse_cache",
    "bpm_llm_threads", "bpm_llm_n_batch", "bpm_grounding_batch_size", "allow_download",
})


class UsageError(Exception):
    """Bad command-line use: exit status 2 (also ``editmetrics.engine.runner.UsageError``)."""


class ResultsFileError(UsageError):
    """A results file cannot be read or written as asked (exit status 2)."""


class OutputError(ResultsFileError):
    """Writing an output failed (disk full, read-only folder, permission)."""


# ---------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------


def score_affecting_settings(settings: dict[str, Any], registry: Any = None) -> dict[str, Any]:
    """The settings that can change a score, as JSON values.

    ``registry``: the declared-settings registry; when given, a setting whose
    declaration says ``affects_scores=False`` is left out. Without it every
    key except ``NOT_SCORE_AFFECTING`` is kept (an unknown key is assumed to
    matter: refusing a resume wrongly is cheap, mixing two runs is not).
    """
    if registry is None:  # the declared settings (editmetrics.engine.settings): one source of truth
        from editmetrics.engine.settings import declared

        registry = declared()
    out = {}
    for key in sorted(settings):
        if key in NOT_SCORE_AFFECTING:
            continue
        if registry is not None:
            declared = registry.get(key) if hasattr(registry, "get") else None
            if declared is not None and getattr(declared, "affects_scores", True) is False:
                continue
        out[key] = jsonable(settings[key])
    return out


def jsonable(value: Any) -> Any:
    """A JSON value equal to itself after a write/read round trip."""
    return json.loads(json.dumps(value, default=str, ensure_ascii=True))




def weight_fingerprints(settings: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Fingerprints of the weight files a run's settings point at: a setting
    whose value (or the part after ``ARCH:``) is an existing file or folder."""
    from editmetrics.engine.model_runs import fingerprint

    out = {}
    for key, value in sorted(settings.items()):
        if key in NOT_SCORE_AFFECTING or not isinstance(value, str) or not value:
            continue
        for candidate in (value, value.split(":", 1)[-1]):
            path = os.path.expanduser(candidate)
            try:
                if not (os.path.isfile(path) or (os.path.isdir(path) and _small_folder(path))):
                    continue
                out[key] = {"path": os.path.abspath(path), "fingerprint": fingerprint(path)}
            except (OSError, ValueError):
                continue
            break
    return out


def _small_folder(path: str, limit: int = 256) -> bool:
    """A weights folder, not a data tree: at most ``limit`` files (a setting
    such as ``weights_dir=.`` must not make a run read the whole disk)."""
    count = 0
    for _root, _dirs, names in os.walk(path):
        count += len(names)
        if count > limit:
            return False
    return True


def make_header(kind: str, pairs: str, pairs_sha256: str, records: int, **fields: Any) -> dict:
    from editmetrics import __version__

    header = {
        "format": FORMAT,
        "kind": kind,
        "editmetrics_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "pairs": {"path": os.path.abspath(pairs), "sha256": pairs_sha256, "records": records},
    }
    header.update({k: jsonable(v) for k, v in fields.items()})
    return header


# What --resume compares (key of the header -> how it is named in messages).
COMPARED = {
    "kind": "kind of run",
    "metrics": "metric specs",
    "settings": "score-affecting settings",
    "weights": "weight fingerprints",
    "model": "model",
    "params": "model parameters",
    "seed": "seed",
}


def header_differences(old: dict, new: dict) -> list[str]:
    """What makes ``new`` another run than ``old`` (empty: the same run)."""
    diffs = []
    old_pairs, new_pairs = old.get("pairs") or {}, new.get("pairs") or {}
    if old_pairs.get("sha256") != new_pairs.get("sha256"):
        diffs.append(f"pairs file content: the file has {old_pairs.get('path')} "
                     f"(sha256 {str(old_pairs.get('sha256'))[:12]}), this run {new_pairs.get('path')} "
                     f"(sha256 {str(new_pairs.get('sha256'))[:12]})")
    for key, label in COMPARED.items():
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            for name in sorted(set(a) | set(b)):
                if a.get(name) != b.get(name):
                    diffs.append(f"{label}: {name!r} is {_show(a, name)} in the file, {_show(b, name)} now")
        else:
            diffs.append(f"{label}: {a!r} in the file, {b!r} now")
    return diffs


def _show(d: dict, name: str) -> str:
    return repr(d[name]) if name in d else "unset"


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


def is_header(obj: Any) -> bool:
    return isinstance(obj, dict) and len(obj) == 1 and isinstance(obj.get(HEADER_KEY), dict)


def read_run(path: str) -> tuple[dict | None, Iterator[dict]]:
    """(header, rows) of a results file. ``header`` is None for a file written
    before headers existed. Rows stream; see ``read_results``."""
    header = read_header(path)
    return header, read_results(path)


def read_header(path: str) -> dict | None:
    try:
        with open(path, "rb") as fh:
            first = fh.readline()
    except OSError as exc:
        raise ResultsFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        obj = json.loads(first) if first.endswith(b"\n") else None
    except (ValueError, RecursionError):
        return None
    return obj[HEADER_KEY] if is_header(obj) else None


def read_results(path: str) -> Iterator[dict]:
    """Rows of a results file, streamed: the header line is skipped, a last
    line without newline (a crash mid-write) is ignored, any other line that
    is not a JSON object raises ``ResultsFileError`` naming it."""
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise ResultsFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    with fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.endswith(b"\n"):
                break  # torn last line
            if not raw.strip():
                continue
            row = _parse_line(path, number, raw)
            if number == 1 and is_header(row):
                continue
            yield row


def _parse_line(path: str, number: int, raw: bytes) -> dict:
    try:
        row = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ResultsFileError(f"{path}: line {number} is not valid JSON ({_short(exc)}); "
                               "only a torn last line is ever repaired") from None
    if not isinstance(row, dict):
        raise ResultsFileError(f"{path}: line {number} is not a JSON object")
    return row


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 120 else text[:117] + "..."


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def dumps(row: dict) -> str:
    """One output line: ASCII JSON (valid UTF-8 whatever the strings hold).
    ``Infinity`` stays allowed for scores (PSNR of identical images)."""
    return json.dumps(row, ensure_ascii=True, allow_nan=True, default=_fallback)


def _fallback(value: Any) -> Any:
    """Non-JSON values in metric details: numpy scalars/arrays as numbers, the rest as text."""
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", 1) == 0:
        return item()
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    return repr(value)


def safe_dumps(row: dict) -> str:
    """``dumps``, and when a row still cannot be written (a self-referencing
    structure), the row without its details plus an error saying so."""
    try:
        return dumps(row)
    except (TypeError, ValueError, RecursionError) as exc:
        slim = {k: row.get(k) for k in ("id", "scores", "errors") if k in row}
        slim.setdefault("errors", {})
        slim = dict(slim, errors=dict(slim["errors"], row=f"row could not be written as JSON: {_short(exc)}"),
                    warnings={}, details={})
        try:
            return dumps(slim)
        except (TypeError, ValueError, RecursionError):
            return dumps({"id": repr(row.get("id")), "scores": {}, "errors": {"row": "row could not be written"},
                          "warnings": {}, "details": {}})


def lock_info_path(path: str) -> str:
    return path + ".lock"


class ResultsWriter:
    """The one writer of a results file (see the module docstring).

    Use as a context manager; ``done`` holds the ids already in the file
    after ``open``; ``write`` appends one row and flushes it.
    """

    def __init__(self, path: str, header: dict, *, resume: bool = False, overwrite: bool = False,
                 option: str = "--out"):
        if resume and overwrite:
            raise ResultsFileError("--resume and --overwrite exclude each other")
        self.path = path
        self.header = header
        self.resume = resume
        self.overwrite = overwrite
        self.option = option
        self.done: set[str] = set()
        self.written = 0
        self.notes: list[str] = []  # e.g. a version change on resume: printed by the caller
        self._fd: int | None = None
        self._created = False
        self._info_written = False

    # -- context --------------------------------------------------------
    def __enter__(self) -> "ResultsWriter":
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> set[str]:
        import fcntl

        path = self.path
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise OutputError(f"cannot use {self.option} {path}: {exc.strerror or exc}") from None
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise ResultsFileError(f"{self.option} {path} is not a regular file")
        try:
            folder = os.path.dirname(os.path.abspath(path))
            os.makedirs(folder, exist_ok=True)
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        self._created = st is None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise OutputError(f"cannot lock {path}: {exc.strerror or exc}") from None
            os.close(self._fd)
            self._fd = None
            self._created = False
            raise ResultsFileError(f"{path} is being written by another editmetrics process "
                                   f"({_holder(path)}); wait for it to finish or choose another {self.option}") from None
        self._write_lock_info()
        size = os.fstat(self._fd).st_size
        if size == 0:
            self._write(dumps({HEADER_KEY: self.header}) + "\n")
            return self.done
        self._check_existing()
        return self.done

    def _check_existing(self) -> None:
        path, fd = self.path, self._fd
        with os.fdopen(os.dup(fd), "rb") as fh:
            fh.seek(0)
            first = fh.readline()
            try:
                obj = json.loads(first) if first.endswith(b"\n") else None
            except (ValueError, RecursionError):
                obj = None
            if not is_header(obj):
                raise ResultsFileError(
                    f"{path} is not an editmetrics results file (no run header on line 1; files written by "
                    f"editmetrics before 0.2 have none); it is never appended to or overwritten: "
                    f"choose another {self.option}")
            old = obj[HEADER_KEY]
            if old.get("kind") != self.header.get("kind"):
                raise ResultsFileError(f"{path} holds a {old.get('kind')!r} run, not a {self.header.get('kind')!r} "
                                       f"run; choose another {self.option}")
            if not self.resume and not self.overwrite:
                raise ResultsFileError(f"{path} exists: pass --resume to continue it, --overwrite to replace it, "
                                       f"or choose another {self.option}")
            if self.overwrite:
                self._truncate(0)
                self._write(dumps({HEADER_KEY: self.header}) + "\n")
                return
            diffs = header_differences(old, self.header)
            if diffs:
                raise ResultsFileError(f"{path} holds another run; --resume continues only the same run. "
                                       "Differences: " + "; ".join(diffs)
                                       + f". Nothing was changed; use another {self.option} (or --overwrite)")
            if old.get("editmetrics_version") != self.header.get("editmetrics_version"):
                self.notes.append(f"note: {path} was started by editmetrics {old.get('editmetrics_version')}, "
                                  f"this is {self.header.get('editmetrics_version')}")
            self.header = old
            good = len(first)
            for number, raw in enumerate(fh, start=2):
                if not raw.endswith(b"\n"):
                    break  # the torn last line: dropped below
                if raw.strip():
                    row = _parse_line(path, number, raw)
                    if "id" not in row:
                        raise ResultsFileError(f"{path}: line {number} has no 'id'")
                    key = str(row["id"])
                    if key in self.done:
                        raise ResultsFileError(f"{path}: line {number} repeats id {key!r}")
                    self.done.add(key)
                good += len(raw)
        if good != os.fstat(fd).st_size:
            self._truncate(good)

    def write(self, row: dict) -> None:
        self._write(safe_dumps(row) + "\n")
        self.written += 1

    def close(self) -> None:
        if self._fd is None:
            return
        if self._info_written:
            try:
                os.remove(lock_info_path(self.path))
            except OSError:
                pass
        try:
            os.close(self._fd)  # releases the flock
        finally:
            self._fd = None

    def discard_if_new(self) -> None:
        """Remove a file this writer created and wrote nothing but the header to."""
        if self._created and self.written == 0:
            try:
                os.remove(self.path)
            except OSError:
                pass

    # -- low level ------------------------------------------------------
    def _write(self, text: str) -> None:
        data = text.encode("utf-8")
        try:
            os.lseek(self._fd, 0, os.SEEK_END)
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc} "
                              f"({self.written} rows written; the file stays resumable)") from None

    def _truncate(self, size: int) -> None:
        try:
            os.ftruncate(self._fd, size)
        except OSError as exc:
            raise OutputError(f"cannot repair {self.path}: {exc.strerror or exc}") from None

    def _write_lock_info(self) -> None:
        try:
            with open(lock_info_path(self.path), "w", encoding="utf-8") as fh:
                fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                     "since": datetime.datetime.now(datetime.timezone.utc).isoformat(
                                         timespec="seconds")}) + "\n")
            self._info_written = True
        except OSError:
            pass  # informational only: the flock is the lock


def _holder(path: str) -> str:
    try:
        with open(lock_info_path(path), encoding="utf-8") as fh:
            info = json.loads(fh.read())
        return f"pid {info.get('pid')} on host {info.get('host')}, since {info.get('since')}"
    except (OSError, ValueError):
        return "holder unknown"


# ---------------------------------------------------------------------------
# Other outputs: never onto an input, written atomically
# ---------------------------------------------------------------------------


def _identity(path: str) -> tuple:
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except (OSError, ValueError):
        return ("path", os.path.realpath(os.path.abspath(path)))


def check_paths(inputs: dict[str, str | None], outputs: dict[str, str | None]) -> None:
    """Refuse (before any work) an output that is an input or another output.
    Paths are compared by file identity (hard and symbolic links) when they
    exist, else by resolved path."""
    seen: dict[tuple, str] = {}
    for label, path in inputs.items():
        if path:
            seen.setdefault(_identity(path), f"the input {label} {path}")
    for label, path in outputs.items():
        if not path:
            continue
        ident = _identity(path)
        alt = ("path", os.path.realpath(os.path.abspath(path)))
        for key in (ident, alt):
            if key in seen:
                raise ResultsFileError(f"{label} {path} is the same file as {seen[key]}; choose another {label}")
        seen[ident] = f"the output {label} {path}"
        seen[alt] = f"the output {label} {path}"


def atomic_write(path: str, text: str, *, replaceable=None, label: str = "output", overwrite: bool = False) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename. An
    existing file is replaced only when ``replaceable(path)`` says it is an
    output of this kind (or ``overwrite``)."""
    import tempfile

    check_replaceable(path, replaceable, label, overwrite)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise OutputError(f"cannot write {label} {path}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            try:
                os.remove(tmp)
            except OSError:
                pass


def check_replaceable(path: str | None, replaceable, label: str, overwrite: bool = False) -> None:
    """Refuse (before any work) an existing ``path`` that ``atomic_write``
    would not replace."""
    if not path or not os.path.lexists(path):
        return
    if not os.path.isfile(path):
        raise ResultsFileError(f"{label} {path} is not a regular file")
    if not overwrite and replaceable is not None and not replaceable(path):
        raise ResultsFileError(f"{label} {path} exists and was not written by editmetrics; "
                               "it is never overwritten (choose another path, or pass --overwrite)")


def starts_with(prefixes: tuple[bytes, ...]):
    """A ``replaceable`` test: the file's first bytes are one of ``prefixes``."""
    def test(path: str) -> bool:
        try:
            with open(path, "rb") as fh:
                head = fh.read(64)
        except OSError:
            return False
        return head.startswith(prefixes) or head == b""
    return test
