"""Self-benchmark results kept between runs, so a miner that ran here before hashes at once.

Choosing an OpenCL kernel shape measures every candidate (~0.3 s each plus a warm-up launch) and
`--engine auto` measures the CPU engine too: ~1.5 s of every start on this machine's PoCL, measured
here, where a Qubic client starts its idle command at every idle phase. The kernels themselves are
already cached by the driver (PoCL keeps built kernels in ~/.cache/pocl) and by pyopencl; this file
keeps the choice. An entry is keyed by everything that can change the answer — platform and driver
versions, device, kernel source, thread count — so a driver upgrade or a new kernel measures again,
and it expires after `MAX_AGE_S` in any case. A missing, unreadable or corrupt file only means
measuring again; it never stops a miner.
"""

import contextlib
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

MAX_AGE_S = 30 * 86400.0
FILE_NAME = "engine-tuning.json"


def default_path() -> Path:
    """$QSCRYPT_CACHE_DIR, else $XDG_CACHE_HOME/qscrypt, else ~/.cache/qscrypt; the file in it."""
    folder = os.environ.get("QSCRYPT_CACHE_DIR")
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        folder = str(Path(base) / "qscrypt")
    return Path(folder) / FILE_NAME


def key_of(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:32]


class TuningCache:
    def __init__(self, path: Path, refresh: bool = False) -> None:
        self.path = path
        self.refresh = refresh  # measure again and overwrite (`qscrypt miner --retune`)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            log.warning("engine tuning cache unreadable: measuring again", path=str(self.path),
                        error=str(error))
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str, now: float | None = None) -> dict[str, Any] | None:
        if self.refresh:
            return None
        entry = self._read().get(key)
        now = time.time() if now is None else now
        if not isinstance(entry, dict) or not isinstance(entry.get("at"), (int, float)):
            return None
        if not 0 <= now - entry["at"] <= MAX_AGE_S:
            return None
        return entry

    def put(self, key: str, value: dict[str, Any], now: float | None = None) -> None:
        """Record `value` (JSON-able) under `key`; a failure to write is logged, never raised."""
        data = self._read()
        data[key] = {**value, "at": time.time() if now is None else now}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, indent=1, sort_keys=True)
            os.replace(temporary, self.path)  # atomic: two miners starting at once never see half a file
        except OSError as error:
            log.warning("engine tuning cache not written", path=str(self.path), error=str(error))
            with contextlib.suppress(NameError, OSError):
                Path(temporary).unlink()
