"""Library semantics as data: which calls spawn threads, lock, are atomic, are nondeterministic, ...

The bundled model files live in ftmb_instrument/apimodels/ (one TOML file per API family, format
in apimodels/README.md); users add files with `--model FILE`. Lookups go through `Semantics.lookup`,
the one place that knows how a callee name maps to its roles.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelError

BUNDLED_DIR = Path(__file__).parent / "apimodels"

# Argument indexes (`*_arg`, `arg_param`) are below this; a call passing fewer arguments than an
# index names is a model that does not fit the function, reported where the call is analyzed.
MAX_ARGS = 32

# kind -> {field: (type, default)}; `names` is required for every kind.
KINDS: dict[str, dict[str, tuple[type, Any]]] = {
    "spawn": {"function_arg": (int, 0), "arg_arg": (int, -1), "instances": (str, "per_call"), "main_runs_arg": (int, -1)},
    "join": {},
    "lock": {"op": (str, "acquire"), "lock_arg": (int, 0), "shared": (bool, False), "protects": (bool, True)},
    "atomic": {"object_arg": (int, 0), "mode": (str, "rmw")},
    "core_identity": {},
    "nondeterminism": {"category": (str, "other"), "out_arg": (int, -1), "out_bytes": (int, 0),
                       "out_count_arg": (int, -1)},
    "packet_io": {"direction": (str, "rx"), "handle_arg": (int, -1)},
    "alloc": {},
    "opaque_create": {},
    "opaque_access": {"handle_arg": (int, 0), "mode": (str, "rmw"), "thread_safe": (bool, False), "object": (str, ""),
                      "quiet": (bool, False), "quiet_result": (int, 0), "quiet_zero_arg": (int, -1)},
    "signal": {"handler_arg": (int, 1)},
    "unreplayable": {"reason": (str, "")},
    "callback": {"function_arg": (int, 0), "function_in_struct": (bool, False), "arg_arg": (int, -1),
                 "arg_param": (int, 0), "runs_in": (str, "caller"), "driver": (list, [])},
}

ENUMS = {
    ("spawn", "instances"): {"one", "several", "per_call"},
    ("lock", "op"): {"acquire", "try_acquire", "release"},
    ("atomic", "mode"): {"read", "write", "rmw"},
    ("opaque_access", "mode"): {"read", "write", "rmw"},
    ("packet_io", "direction"): {"rx", "tx", "control"},
    ("nondeterminism", "category"): {"time", "random", "other"},
    ("callback", "runs_in"): {"caller", "driver", "exit"},
}


@dataclass(frozen=True)
class Role:
    """One entry of a model file: a kind plus its fields, for the callee names it matches."""

    kind: str
    params: tuple[tuple[str, Any], ...]
    source: str  # the entry it came from, "path/file.toml: [[kind]] #N", for error messages

    def get(self, key: str) -> Any:
        return dict(self.params)[key]


@dataclass
class Semantics:
    exact: dict[str, list[Role]] = field(default_factory=dict)
    patterns: list[tuple[str, Role]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    cache: dict[str, list[Role]] = field(default_factory=dict)  # lookup results by name

    def lookup(self, name: str) -> list[Role]:
        """All roles of the function `name`, exact matches first."""
        roles = self.cache.get(name)
        if roles is None:
            roles = list(self.exact.get(name, ()))
            for pattern, role in self.patterns:
                if fnmatch.fnmatchcase(name, pattern):
                    roles.append(role)
            self.cache[name] = roles
        return roles

    def role(self, name: str, kind: str) -> Role | None:
        for r in self.lookup(name):
            if r.kind == kind:
                return r
        return None

    def names_of(self, kind: str) -> set[str]:
        """Exact names of one kind (patterns excluded); used for reporting and documentation."""
        return {n for n, roles in self.exact.items() if any(r.kind == kind for r in roles)}

    def add_file(self, path: Path) -> None:
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ModelError(f"{path}: cannot read model file: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ModelError(f"{path}: invalid TOML: {exc}") from None
        for kind, entries in data.items():
            if kind not in KINDS:
                raise ModelError(f"{path}: unknown model key {kind!r} (known: {', '.join(sorted(KINDS))})")
            if not isinstance(entries, list):
                raise ModelError(f"{path}: {kind!r} must be an array of tables ([[{kind}]])")
            for i, entry in enumerate(entries):
                self._add_entry(path, kind, i, entry)
        self.files.append(str(path))
        self.cache.clear()

    def _add_entry(self, path: Path, kind: str, i: int, entry: Any) -> None:
        where = f"{path}: [[{kind}]] #{i + 1}"
        if not isinstance(entry, dict):
            raise ModelError(f"{where}: must be a table")
        names = entry.get("names")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise ModelError(f"{where}: 'names' must be a non-empty list of function names")
        spec = KINDS[kind]
        params = {}
        for key, value in entry.items():
            if key == "names":
                continue
            if key not in spec:
                known = ", ".join(["names", *spec]) or "names"
                raise ModelError(f"{where}: unknown key {key!r} (known: {known})")
            typ = spec[key][0]
            if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
                raise ModelError(f"{where}: {key!r} must be {typ.__name__}, got {value!r}")
            if typ is int and key.endswith(("_arg", "_param")):
                lowest = -1 if spec[key][1] == -1 else 0  # -1 means "none" where that is the default
                if not lowest <= value < MAX_ARGS:
                    raise ModelError(f"{where}: {key!r} is an argument index from {lowest} to {MAX_ARGS - 1}, "
                                     f"got {value!r}")
            allowed = ENUMS.get((kind, key))
            if allowed and value not in allowed:
                raise ModelError(f"{where}: {key!r} must be one of {sorted(allowed)}, got {value!r}")
            if typ is list:
                if not all(isinstance(v, str) and v for v in value):
                    raise ModelError(f"{where}: {key!r} must be a list of function names, got {value!r}")
                value = tuple(value)
            params[key] = value
        for key, (_, default) in spec.items():
            params.setdefault(key, tuple(default) if isinstance(default, list) else default)
        if kind == "callback" and (params["runs_in"] == "driver") != bool(params["driver"]):
            raise ModelError(f"{where}: 'driver' lists the functions that run the callback, "
                             f"required with runs_in = \"driver\" and only with it")
        if kind == "opaque_access" and not params["quiet"] and (params["quiet_result"] != 0 or
                                                                params["quiet_zero_arg"] != -1):
            raise ModelError(f"{where}: 'quiet_result' and 'quiet_zero_arg' describe a quiet call, only with "
                             f"quiet = true")
        role = Role(kind, tuple(sorted(params.items())), where)
        for name in names:
            if any(ch in name for ch in "*?["):
                self.patterns.append((name, role))
            else:
                self.exact.setdefault(name, []).append(role)


def load_semantics(extra: list[Path] | tuple[Path, ...] = ()) -> Semantics:
    """The bundled model files plus the user's, in that order."""
    sem = Semantics()
    for path in sorted(BUNDLED_DIR.glob("*.toml")):
        sem.add_file(path)
    for path in extra:
        sem.add_file(Path(path))
    return sem
