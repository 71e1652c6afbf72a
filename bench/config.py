"""Hyperparameter specs, `--set` parsing, resolved run configurations and their hashes."""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from bench.errors import BenchError
from bench.registry import suggest


@dataclass(frozen=True)
class Range:
    """The valid values of a number: bounds (None = unbounded), each closed unless marked open. NaN and the
    infinities are never valid."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def describe(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        return " and ".join(parts) or "a finite number"

    def contains(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def check(self, name: str, value) -> None:
        if not self.contains(value):
            raise BenchError(f"{name}={value} is out of range: it must be {self.describe()}")


POSITIVE = Range(0, None, low_open=True)
NON_NEGATIVE = Range(0)
AT_LEAST_ONE = Range(1)
FRACTION = Range(0, 1)


@dataclass(frozen=True)
class HParam:
    """One hyperparameter a method owns: a default (a value, or a function of the protocol) and a search space.

    `space` is ("log", low, high), ("uniform", low, high), ("int", low, high) or ("choice", options); it drives
    seeded random draws (`--hparams-seed`) and, later, Optuna searches. `valid` is the range any value must lie in
    (checked before a run touches the store); a float is always checked to be finite.
    """

    default: Any | Callable
    help: str = ""
    space: tuple | None = None
    valid: Range | None = None

    def default_for(self, protocol) -> Any:
        return self.default(protocol) if callable(self.default) else self.default


@dataclass(frozen=True)
class Option:
    """A command-line flag that a method declares for `bench run` (e.g. AutoFT's --trials).

    With `setting`, the flag is shorthand for `--set setting=VALUE` (a hyperparameter, or a protocol setting that
    marks the run unofficial). Without it, the value is a run option: handed to the method as `view.options[dest]`,
    outside the run's configuration and hash (e.g. where a search keeps its study)."""

    flag: str
    help: str
    setting: str | None = None
    type: type = int

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


def seed_hash(*parts) -> int:
    """A stable 31-bit seed from any JSON-able parts (DomainBed's trick: draws do not shift when specs change)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return int(hashlib.md5(blob).hexdigest(), 16) % (2**31)


def draw(name: str, spec: HParam, hparams_seed: int, method: str, dataset: str):
    if spec.space is None:
        raise BenchError(f"hyperparameter {name!r} has no search space, so it cannot be drawn at random")
    rng = np.random.RandomState(seed_hash(method, dataset, hparams_seed, name))
    kind, *args = spec.space
    if kind == "log":
        return float(math.exp(rng.uniform(math.log(args[0]), math.log(args[1]))))
    if kind == "uniform":
        return float(rng.uniform(args[0], args[1]))
    if kind == "int":
        return int(rng.randint(args[0], args[1] + 1))
    if kind == "choice":
        return args[0][rng.randint(len(args[0]))]
    raise ValueError(f"unknown space kind {kind!r}")


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    """`--set key=value` pairs; values are read as JSON when they parse (numbers, true, lists), else as text."""
    out = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise BenchError(f"malformed --set {item!r}: write key=value, e.g. --set lr=1e-4")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key] = value
    return out


def coerce(key: str, value: Any, like: Any) -> Any:
    """Make a --set value the type of the default it replaces, or say why it cannot be."""
    try:
        if isinstance(like, bool):
            if isinstance(value, bool):
                return value
            raise ValueError
        if isinstance(like, int) and not isinstance(like, bool):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if isinstance(like, float):
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if isinstance(like, (tuple, list)):
            seq = value if isinstance(value, list) else [value]
            return tuple(coerce(key, v, like[0]) if like else v for v in seq)
        return value
    except (TypeError, ValueError):
        raise BenchError(f"--set {key}={json.dumps(value)} has the wrong type: expected {type(like).__name__} like {json.dumps(like)}")


def resolve_hparams(method_cls, protocol, overrides: dict, hparams_seed: int = 0) -> dict:
    specs: dict[str, HParam] = method_cls.hparams
    values = {}
    for name, spec in sorted(specs.items()):
        value = spec.default_for(protocol)
        if hparams_seed and spec.space is not None:
            value = draw(name, spec, hparams_seed, method_cls.name, protocol.dataset)
        values[name] = value
    for key, value in overrides.items():
        values[key] = coerce(key, value, values[key])
    for name, value in values.items():
        spec = specs[name]
        rule = spec.valid or (Range() if isinstance(value, float) else None)
        if rule is not None:
            try:
                rule.check(name, value)
            except BenchError as exc:
                raise BenchError(f"--set {exc}; {spec.help or name} (default {spec.default_for(protocol)})")
    return values


def split_overrides(overrides: dict, method_cls, protocol) -> tuple[dict, dict]:
    """Separate `--set` keys into method hyperparameters and protocol settings; unknown keys are an error."""
    method_keys, protocol_keys = set(method_cls.hparams), set(protocol.overridable())
    hp, proto = {}, {}
    for key, value in overrides.items():
        if key in method_keys:
            hp[key] = value
        elif key in protocol_keys:
            proto[key] = value
        else:
            known = sorted(method_keys | protocol_keys)
            raise BenchError(f"unknown setting {key!r} for method {method_cls.name}{suggest(key, known)}; settings: {', '.join(known)}")
    return hp, proto


def short_value(value) -> str:
    """How tables print a setting: floats to 3 significant digits, everything else as is."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(config: dict) -> str:
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:12]
