"""Checks for notebook (papermill) parameters, so a wrong value fails at the top with the fix."""

_TYPES = {int: "an integer", float: "a number", str: "a string", bool: "True or False"}


def check(name, value, kind, choices=None, low=None, overrides=False):
    """Return ``value`` if it is of ``kind`` (and in ``choices``, and >= ``low``); else raise ValueError.

    Ints are accepted where floats are expected; bools are never taken for numbers. ``overrides``: the value is a
    profile setting, changed through a notebook's ``overrides`` parameter (the fix says so).
    """
    def fix(example):
        how = f"-y 'overrides: {{{name}: {example}}}'" if overrides else f"-p {name} {example}"
        return f"e.g. papermill ... {how}"
    ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        example = choices[0] if choices else {int: 1, float: 0.1, str: "x", bool: True}[kind]
        raise ValueError(f"parameter {name}={value!r} ({type(value).__name__}) must be {_TYPES[kind]}; {fix(example)}")
    if choices is not None and value not in choices:
        raise ValueError(f"parameter {name}={value!r} is not one of {tuple(choices)}; {fix(choices[0])}")
    if low is not None and value < low:
        raise ValueError(f"parameter {name}={value!r} must be at least {low}.")
    return value
