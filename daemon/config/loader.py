"""Loading a config: files, `extends` overlays, environment overrides, interpolation, validation.

The promise: `load_config` either returns a fully validated `Config` or raises `ConfigError` with
every problem it found, each naming the file (or environment variable) it came from, the dotted
field path and the reason. It never lets a traceback reach the operator.

Order of resolution: the `extends` chain (parents first, deep merge), then `AWSD__SECTION__KEY`
environment overrides, then `${VAR}` / `${VAR:-default}` interpolation in string values, then the
pydantic models, then cross-section checks.
"""

from __future__ import annotations

import difflib
import errno
import hashlib
import json
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_origin

from pydantic import BaseModel, ValidationError

from daemon.base.files import NotARegularFile, TooLarge, read_bounded
from daemon.config.errors import ConfigError, ConfigIssue
from daemon.config.models import Config
from daemon.config.references import reference_problems
from daemon.resources.kind import Problem, ResourceRef

Loc = tuple[str | int, ...]
Provenance = dict[Loc, str]

ENV_PREFIX = "AWSD__"
MAX_CONFIG_BYTES = 1024 * 1024
"""The largest config file read (each file of an `extends` chain): a config is a few KiB; the
cap keeps `/dev/zero` or a runaway file from being read without end."""
DEFAULT_CONFIG_DIRS = ("/etc/awsd", "configs")
DEFAULT_CONFIG_FILE = "/etc/awsd/config.toml"
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")
_SECRET_NAME = re.compile(r"secret|token|passw|credential|authorization|private|api_?key", re.I)

FileStamp = tuple[int, int, int] | None


def file_stamp(path: Path) -> FileStamp:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


CrossCheck = Callable[[Config], list[Problem]]
"""A check across sections: returns (dotted path, reason) pairs for what is wrong."""
References = Callable[[Config], list[ResourceRef]]
"""What the parts of awsd that read a config (the workers) name in it: checked to be declared."""


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """A validated config and where it came from."""

    config: Config
    path: Path
    files: tuple[Path, ...]
    """Every file read (the `extends` chain), for the file watcher."""
    stamps: tuple[FileStamp, ...]
    """(mtime_ns, size, inode) of each file taken just before it was read, so a change made
    while or after loading is always noticed by the watcher."""
    version: str
    """Short hash of the resolved config: shown in logs, status and STATUS=."""
    overrides: tuple[tuple[str, str], ...] = ()
    """(dotted path, environment variable) of every value an `AWSD__...` override set, for
    `check-config` and the startup log."""


def select_config_file(
    *,
    config: str | None = None,
    env: str | None = None,
    config_dir: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Path:
    """Which file to load: `--config`, else `--env`/AWSD_ENV in the config directory, else
    AWSD_CONFIG, else /etc/awsd/config.toml."""
    if config:
        return Path(config)
    env = env or environ.get("AWSD_ENV")
    if env:
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,31}", env):
            raise ConfigError.one("--env", f"invalid environment name {env!r}")
        dirs = [config_dir or environ.get("AWSD_CONFIG_DIR") or ""]
        dirs = [d for d in dirs if d] or list(DEFAULT_CONFIG_DIRS)
        for directory in dirs:
            candidate = Path(directory) / f"{env}.toml"
            if candidate.is_file():
                return candidate
        known = sorted(
            {p.stem for d in dirs if Path(d).is_dir() for p in Path(d).glob("*.toml")} - {"base"}
        )
        raise ConfigError.one(
            f"{env}.toml",
            f"unknown environment {env!r}: no {env}.toml in {', '.join(dirs)}"
            + (f" (known: {', '.join(known)})" if known else ""),
        )
    if environ.get("AWSD_CONFIG"):
        return Path(environ["AWSD_CONFIG"])
    return Path(DEFAULT_CONFIG_FILE)


def load_config(
    path: str | Path,
    environ: Mapping[str, str] = os.environ,
    *,
    references: References | None = None,
    checks: Iterable[CrossCheck] = (),
) -> LoadedConfig:
    """Load, merge, override, interpolate and validate; raise ConfigError listing every problem.

    Besides the models, what the resources declare is checked (names AWS would refuse, pairs that
    cannot work, references between resources), and so is what the caller adds: the references
    the workers make and their own checks (`daemon.worker.Catalog.load` passes every worker
    kind's; a caller that passes none checks the file on its own)."""
    top = Path(path)
    files: list[Path] = []
    stamps: list[FileStamp] = []
    data, prov = _load_layers(top, (), files, stamps)
    issues = _apply_env_overrides(data, prov, environ)
    issues += _interpolate(data, prov, (), environ, str(top))
    if issues:
        raise ConfigError(issues)
    overrides = tuple(
        (_dotted(loc), source.removeprefix("environment "))
        for loc, source in sorted(prov.items(), key=lambda item: _dotted(item[0]))
        if source.startswith(f"environment {ENV_PREFIX}")
    )
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_validation_issues(exc, data, prov, str(top))) from None
    refs = config.resources.references() + (references(config) if references else [])
    problems = config.resources.problems(config.env) + reference_problems(config, refs)
    for check in checks:
        problems += check(config)
    cross = [
        ConfigIssue(_source_for(prov, _loc_of(p), str(top)), p, reason) for p, reason in problems
    ]
    if cross:
        raise ConfigError(cross)
    return LoadedConfig(config, top, tuple(files), tuple(stamps), config_version(config), overrides)


def read_unvalidated(path: str | Path, environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The file's data as `load_config` would validate it (the `extends` chain, environment
    overrides, interpolation), without validating it: for commands that must find a running
    daemon through a few settings (`runtime.state_dir`, `[health]`) while the file has errors
    elsewhere. Raises ConfigError only when the files cannot be read at all."""
    data, prov = _load_layers(Path(path), (), [], [])
    _apply_env_overrides(data, prov, environ)
    _interpolate(data, prov, (), environ, str(path))
    return data


def config_version(config: BaseModel) -> str:
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


# --- files and overlays -------------------------------------------------------------------------


def _read_toml(path: Path) -> dict[str, Any]:
    shown = str(path)
    try:
        raw = read_bounded(path, MAX_CONFIG_BYTES)
    except FileNotFoundError:
        raise ConfigError.one(shown, "file not found") from None
    except NotARegularFile as exc:
        what = (
            "is a directory, not a config file"
            if exc.strerror == "a directory"
            else (f"is {exc.strerror}, not a regular file")
        )
        raise ConfigError.one(shown, what) from None
    except TooLarge as exc:
        raise ConfigError.one(
            shown, f"larger than {MAX_CONFIG_BYTES} bytes ({exc.strerror}); is this a config file?"
        ) from None
    except PermissionError:
        raise ConfigError.one(shown, "permission denied") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError.one(shown, "symbolic link loop") from None
        raise ConfigError.one(shown, f"cannot read: {exc.strerror or exc}") from None
    if not raw.strip():
        raise ConfigError.one(shown, "file is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError.one(
            shown, f"not UTF-8 text (bad byte at offset {exc.start}); is this a TOML file?"
        ) from None
    if "\x00" in text:
        raise ConfigError.one(shown, "contains NUL bytes; is this a TOML file?")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError.one(shown, f"invalid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError.one(shown, "invalid TOML: nested too deeply") from None


def _load_layers(
    path: Path, stack: tuple[Path, ...], files: list[Path], stamps: list[FileStamp]
) -> tuple[dict[str, Any], Provenance]:
    try:
        resolved = path.resolve(strict=True)
    except FileNotFoundError:
        resolved = path.absolute()  # reported as "file not found" by the read
    except (OSError, RuntimeError):  # a symlink loop: RuntimeError before Python 3.13
        raise ConfigError.one(str(path), "symbolic link loop") from None
    if resolved in stack:
        chain = " -> ".join(p.name for p in (*stack, resolved))
        raise ConfigError.one(str(path), f"extends cycle: {chain}", "extends")
    stamps.append(file_stamp(path))
    data = _read_toml(path)
    files.append(path)
    parents = data.pop("extends", None)
    if parents is None:
        parents = []
    elif isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise ConfigError.one(str(path), "must be a file name or a list of file names", "extends")
    merged: dict[str, Any] = {}
    prov: Provenance = {}
    for parent in parents:
        parent_path = path.parent / parent
        if not parent_path.exists() and not parent_path.is_symlink():
            raise ConfigError.one(str(path), f"file not found: {parent_path}", "extends")
        parent_data, parent_prov = _load_layers(parent_path, (*stack, resolved), files, stamps)
        _merge(merged, parent_data, prov, (), None)
        prov.update(parent_prov)
    _merge(merged, data, prov, (), str(path))
    return merged, prov


def _merge(
    into: dict[str, Any], overlay: dict[str, Any], prov: Provenance, loc: Loc, source: str | None
) -> None:
    """Deep merge: tables merge key by key; anything else (arrays included) replaces."""
    for key, value in overlay.items():
        here = (*loc, key)
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value, prov, here, source)
        else:
            into[key] = value
        if source is not None:
            _mark(prov, here, value, source)


def _mark(prov: Provenance, loc: Loc, value: Any, source: str) -> None:
    prov[loc] = source
    if isinstance(value, dict):
        for key, child in value.items():
            _mark(prov, (*loc, key), child, source)


# --- environment --------------------------------------------------------------------------------


def _apply_env_overrides(
    data: dict[str, Any], prov: Provenance, environ: Mapping[str, str]
) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__")]
        source = f"environment {name}"
        if not all(keys):
            issues.append(ConfigIssue(source, "", "empty key in the name (use AWSD__SECTION__KEY)"))
            continue
        node = data
        for depth, key in enumerate(keys[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                path = ".".join(keys[: depth + 1])
                issues.append(ConfigIssue(source, path, "is not a table, cannot set keys in it"))
                break
            node = child
        else:
            node[keys[-1]] = _parse_env_value(environ[name])
            prov[tuple(keys)] = source
    return issues


def _parse_env_value(raw: str) -> Any:
    """`5`, `true`, `1.5`, `["a", "b"]`, `{ k = 1 }` and `"quoted"` are read as TOML; anything
    else is taken as text as it is (`prod`, `2026-01-01`, `1.2.3`)."""
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw
    if isinstance(value, str) and raw.strip()[:1] in ('"', "'"):
        return value  # a quoted TOML string: its content, without the quotes
    return value if isinstance(value, bool | int | float | list | dict) else raw


def _interpolate(
    node: Any, prov: Provenance, loc: Loc, environ: Mapping[str, str], top: str
) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    items: list[tuple[Any, Any]]
    if isinstance(node, dict):
        items = list(node.items())
    elif isinstance(node, list):
        items = list(enumerate(node))
    else:
        return issues
    for key, value in items:
        here = (*loc, key)
        if isinstance(value, str) and "$" in value:
            try:
                node[key] = _expand(value, environ)
            except ValueError as exc:
                issues.append(ConfigIssue(_source_for(prov, here, top), _dotted(here), str(exc)))
        else:
            issues += _interpolate(value, prov, here, environ, top)
    return issues


def _expand(value: str, environ: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name is None:
            raise ValueError("malformed variable reference: use ${NAME} or ${NAME:-default}")
        current = environ.get(name)
        if default is not None:
            return current or default
        if current is None:
            raise ValueError(
                f"environment variable {name} is not set (write ${{{name}:-default}} for a default)"
            )
        return current

    return _VAR.sub(replace, value)


# --- validation errors --------------------------------------------------------------------------


def _validation_issues(
    exc: ValidationError, data: dict[str, Any], prov: Provenance, top: str
) -> list[ConfigIssue]:
    issues = []
    for err in exc.errors(include_url=False):
        loc = _clean_loc(tuple(err["loc"]), data)
        path = _dotted(loc)
        reason = err["msg"]
        kind = err["type"]
        if kind == "extra_forbidden":
            reason = "unknown key" + _did_you_mean(loc)
        elif kind == "missing":
            reason = "required but not set"
        elif kind == "value_error":
            reason = reason.removeprefix("Value error, ")
        elif not _SECRET_NAME.search(path) and not isinstance(err.get("input"), dict | list):
            reason = f"{reason} (got {_short(err.get('input'))})"
        issues.append(ConfigIssue(_source_for(prov, loc, top), path, reason))
    return issues


def _clean_loc(loc: Loc, data: Any) -> Loc:
    """Drop what pydantic adds to a location that is not a key of the input (union tags)."""
    out: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if in_dict or in_list:
            node = node[part]
        elif not last or part == "[key]":
            continue
        out.append(part)
    return tuple(out)


def _did_you_mean(loc: Loc) -> str:
    model: Any = Config
    parts = list(loc[:-1])
    while parts:
        part = parts.pop(0)
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return ""
        annotation = fields[part].annotation
        model = _model_of(annotation)
        if get_origin(annotation) is dict and parts:
            parts.pop(0)  # a key of a table of sections (`[resources.queues.<name>]`)
    known = list(getattr(model, "model_fields", {}))
    match = difflib.get_close_matches(str(loc[-1]), known, n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _model_of(annotation: Any) -> Any:
    for arg in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _loc_of(path: str) -> Loc:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", path) if p)


def _source_for(prov: Provenance, loc: Loc, top: str) -> str:
    for end in range(len(loc), 0, -1):
        if loc[:end] in prov:
            return prov[loc[:end]]
    return top


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
