"""Config field specs: the type and range of every field, and the one-line answer to a bad value.

A `Field` is a predicate and the phrase of what it expects. `check_fields`
checks a config (a ConfigDict or a dict) against a table of them and raises
the caller's error class with one message per refusal, always of the form

    config field 'agent.num_critics': got 0, expected an integer >= 1
    config field 'agent.num_critic': unknown (got 3), expected a known field; did you mean 'num_critics'?

so a message names the field, the value and what was expected. Nothing here
builds, traces or writes anything: the driver runs these checks first.
"""
import difflib
import math
import numbers
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence, Type

import numpy as np

# The largest finite float32: hparams travel as float32, so a larger "finite" value would become inf.
FLOAT32_MAX = float(np.finfo(np.float32).max)


class Field(NamedTuple):
    check: Callable[[Any], bool]  # True when the value is acceptable
    expected: str  # what an acceptable value is, as the message says it
    required: bool = True  # False: the driver reads it with a default (config.get)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _bounds_phrase(lo, hi, lo_open=False, hi_open=False) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {hi}"
    return ""


def _within(value, lo, hi, lo_open, hi_open) -> bool:
    if lo is not None and (value < lo or (lo_open and value == lo)):
        return False
    return not (hi is not None and (value > hi or (hi_open and value == hi)))


def integer(lo: Optional[int] = None, hi: Optional[int] = None, required: bool = True) -> Field:
    """An int (not a bool) in [lo, hi]."""
    phrase = " ".join(filter(None, ("an integer", _bounds_phrase(lo, hi))))
    return Field(lambda v: _is_int(v) and _within(v, lo, hi, False, False), phrase, required)


def real(lo=None, hi=None, lo_open=False, hi_open=False, required: bool = True) -> Field:
    """A finite number (int or float, not a bool) within the bounds, representable as a finite float32."""
    phrase = " ".join(filter(None, ("a finite number", _bounds_phrase(lo, hi, lo_open, hi_open))))

    def check(v):
        return _is_real(v) and math.isfinite(v) and abs(v) <= FLOAT32_MAX and _within(v, lo, hi, lo_open, hi_open)

    return Field(check, phrase, required)


def boolean(required: bool = True) -> Field:
    return Field(lambda v: isinstance(v, (bool, np.bool_)), "True or False", required)


def string(required: bool = True) -> Field:
    return Field(lambda v: isinstance(v, str), "a string", required)


def choice(options: Sequence[Any], required: bool = True) -> Field:
    return Field(lambda v: v in tuple(options), f"one of {sorted(options)}", required)


def widths(required: bool = True) -> Field:
    """Hidden layer widths: a non-empty tuple (or list) of integers >= 1."""

    def check(v):
        return isinstance(v, (tuple, list)) and len(v) > 0 and all(_is_int(w) and w >= 1 for w in v)

    return Field(check, "a non-empty tuple of layer widths, each an integer >= 1", required)


def optional(field: Field) -> Field:
    """None, or what `field` accepts; never required."""
    return Field(lambda v: v is None or field.check(v), f"None or {field.expected}", False)


def field_error(error_cls: Type[Exception], name: str, value: Any, expected: str) -> Exception:
    """The one-line refusal: the field, the value, what was expected."""
    return error_cls(f"config field '{name}': got {value!r}, expected {expected}")


def nearest(name: str, known: Sequence[str]) -> str:
    """"; did you mean 'x' or 'y'?" for the closest known names (difflib), or "" if none is close."""
    close = difflib.get_close_matches(name, list(known), n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def check_unknown(config: Mapping[str, Any], known: Sequence[str], prefix: str, error_cls: Type[Exception]) -> None:
    """Refuses a field that no spec names, suggesting the nearest known names."""
    for name in sorted(set(config) - set(known)):
        raise error_cls(
            f"config field '{prefix}{name}': unknown (got {config[name]!r}), expected a known field"
            f"{nearest(name, known)} (known: {', '.join(sorted(known))})"
        )


def check_fields(config: Mapping[str, Any], specs: Mapping[str, Field], prefix: str,
                 error_cls: Type[Exception]) -> None:
    """Every field of `config` is known, every required one present, every value accepted by its spec."""
    check_unknown(config, list(specs), prefix, error_cls)
    for name, spec in specs.items():
        if name not in config:
            if spec.required:
                raise error_cls(f"config field '{prefix}{name}': missing, expected {spec.expected}")
            continue
        if not spec.check(config[name]):
            raise field_error(error_cls, prefix + name, config[name], spec.expected)


class Rule(NamedTuple):
    """A cross-field rule: check(config) -> bool over the fields `names`."""

    names: Sequence[str]
    check: Callable[[Mapping[str, Any]], bool]
    expected: str


def check_rules(config: Mapping[str, Any], rules: Sequence[Rule], prefix: str, error_cls: Type[Exception]) -> None:
    """Refuses the first broken rule, naming its fields and their values."""
    for rule in rules:
        if all(n in config for n in rule.names) and not rule.check(config):
            fields = " and ".join(f"'{prefix}{n}'" for n in rule.names)
            values = " and ".join(repr(config[n]) for n in rule.names)
            raise error_cls(f"config fields {fields}: got {values}, expected {rule.expected}")


# Shared specs of the agents' configs.
LEARNING_RATE = real(0, lo_open=True)
DISCOUNT = real(0, 1)
# tau = 0 would freeze the targets at their initial networks.
POLYAK = real(0, 1, lo_open=True)
