"""A registered bid strategy built from what a person types: its name and `NAME=VALUE`
parameters (values read as TOML), each checked against the constructor's declared types before
anything is built or connected. A bad one raises ValueError in one line naming `--strategy` or
`--param`."""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Iterable
from typing import Any

from market import registry
from market.scenario import ScenarioError, parse_override


def parse_params(params: Iterable[str]) -> dict[str, Any]:
    """`NAME=VALUE` strings as keyword arguments; values are read as TOML (`0.2`, `true`,
    `"x"`), else kept as text. Raises ValueError naming `--param`."""
    parsed: dict[str, Any] = {}
    for text in params:
        try:
            keys, value = parse_override(text)
        except ScenarioError:
            raise ValueError(f"--param {text!r}: expected NAME=VALUE, e.g. markup=0.2"
                             ) from None
        if len(keys) != 1 or not keys[0].isidentifier():
            raise ValueError(f"--param {text!r}: expected NAME=VALUE with a parameter name, "
                             "e.g. markup=0.2")
        parsed[keys[0]] = value
    return parsed


def make_strategy(name: str, params: dict[str, Any] | None = None) -> Any:
    """The registered strategy `name` built with `params`. Raises ValueError naming
    `--strategy` or `--param`."""
    try:
        factory = registry.load("strategies", name)
    except registry.UnknownName:
        known = ", ".join(registry.names("strategies"))
        raise ValueError(f"--strategy: unknown strategy {name!r} (known: {known})") from None
    params = params or {}
    _check_types(name, factory, params)
    try:
        return factory(**params)
    except TypeError as error:
        accepted = _parameters(factory)
        unknown = [key for key in params if accepted is not None and key not in accepted]
        if unknown:
            listed = ", ".join(accepted or ()) or "none"
            raise ValueError(f"--param: strategy {name!r} has no parameter {unknown[0]!r} "
                             f"(its parameters: {listed})") from None
        raise ValueError(f"--param: strategy {name!r}: {error}") from None
    except ValueError as error:
        raise ValueError(f"--param: strategy {name!r}: {error}") from None


def _check_types(name: str, factory: Any, params: dict[str, Any]) -> None:
    """Refuse a parameter whose value is not of the type the strategy's constructor declares
    (`markup=abc` for a float), before anything is built or connected. Parameters without a
    readable annotation are left to the constructor."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # annotations that do not resolve: nothing to check against
        return
    for key, value in params.items():
        hint = hints.get(key)
        if hint is not None and not _fits(hint, value):
            noun, example = _describe(hint)
            raise ValueError(f"--param {key}: strategy {name!r} takes {noun} (e.g. "
                             f"{key}={example}), got {value!r}")


def _fits(hint: Any, value: Any) -> bool:
    """Whether a TOML-read `value` is of type `hint` (an int is a float; a bool is neither)."""
    if hint is Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(member, value) for member in typing.get_args(hint))
    if origin in (tuple, list, set, frozenset):
        return isinstance(value, list | tuple)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # a type this check does not know: the constructor decides


def _describe(hint: Any) -> tuple[str, str]:
    """A type as a parameter's author would say it, and an example value in TOML: ("a
    number", "0.2")."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        described = [_describe(member) for member in typing.get_args(hint)
                     if member is not type(None)]
        nouns = dict.fromkeys(noun for noun, _ in described)
        return " or ".join(nouns), described[0][1]
    if origin in (tuple, list, set, frozenset):
        return "a list", "[0.1, 0.2]"
    names = {float: ("a number", "0.2"), int: ("a whole number", "3"),
             bool: ("true or false", "true"), str: ("text", '"x"')}
    return names.get(hint, (getattr(hint, "__name__", str(hint)), "..."))


def _parameters(factory: Any) -> list[str] | None:
    """The keyword parameters `factory` takes (None: any)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    names = []
    for parameter in signature.parameters.values():
        if parameter.kind is parameter.VAR_KEYWORD:
            return None
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            names.append(parameter.name)
    return names
