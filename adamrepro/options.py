"""The base of every validated, frozen options object (configs, datasets, models).

A leaf module: it imports nothing of adamrepro but the error type, so that config/, data/
and models/ can all build on it without importing one another.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    model_validator,
)

from adamrepro.errors import UserError
from adamrepro.wording import did_you_mean


def _auto_or_bool(value: Any) -> Any:
    if value == "auto" or isinstance(value, bool):
        return value
    raise ValueError(f"give auto, true or false, not {value!r}")


# `auto` (the runner decides per device) or a switch; checked before the union is, so that
# a mistake is one message, not one per member of the union
AutoOrBool = Annotated[Literal["auto"] | bool, BeforeValidator(_auto_or_bool)]
# A number of examples: a whole YAML number above 0 (not `true`, not "300", not -5, which
# would slice all but 5 examples).
Count = Annotated[StrictInt, Field(gt=0)]


class FrozenDict(dict):
    """A dict that refuses to change. pydantic's `frozen` guards only a model's own fields, so
    without this `exp.model["width"] = 10` would edit a config that runs, plans and result
    folders all share. Still a dict: JSON, pydantic and `{**d}` take it as one."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a config is frozen: build a changed copy, as {**d, key: value}")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self):
        # pickle (Ray, copy) would otherwise refill an empty one through __setitem__
        return (FrozenDict, (dict(self),))


class FrozenList(list):
    """A list that refuses to change (why: see FrozenDict). Still equal to the list it was."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a config is frozen: build a changed copy, as [*values, value]")

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse

    def __reduce__(self):
        return (FrozenList, (list(self),))


def frozen(value: Any) -> Any:
    """`value` with every dict and list in it, however deep, made a FrozenDict or FrozenList."""
    if isinstance(value, dict):
        return FrozenDict({key: frozen(item) for key, item in value.items()})
    if isinstance(value, list):
        return FrozenList(frozen(item) for item in value)
    return value


class Frozen(BaseModel):
    """Validated once, then read only: fields cannot be set, and the dicts and lists they
    hold cannot be changed either, also in a `model_copy(update=...)`."""

    # strict: YAML's `"no"`, `1` and `"1e-4"` are not a switch and a number (lax pydantic took
    # `verify: "no"` for false and skipped CIFAR-10's checksums); no option is infinite or NaN
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    @model_validator(mode="after")
    def _freeze_containers(self) -> Frozen:
        _freeze_fields(self)
        return self

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False):
        copied = super().model_copy(update=update, deep=deep)
        _freeze_fields(copied)
        return copied


def _freeze_fields(model: BaseModel) -> None:
    for name, value in model.__dict__.items():
        if isinstance(value, dict | list) and not isinstance(value, FrozenDict | FrozenList):
            # the one write a frozen model allows itself: its own containers, once, at birth
            object.__setattr__(model, name, frozen(value))


def location(err: dict) -> str:
    # pydantic's "[key]" marks a key of a mapping that is wrong, not a value; it names a
    # key YAML read as true by its hash, 1
    loc = list(err["loc"])
    if loc[-1:] == ["[key]"]:
        loc = loc[:-2] + [err.get("input", loc[-2])]
    return ".".join(str(part) for part in loc) or "(top level)"


def message(err: dict) -> str:
    """pydantic's message, without the "Value error, " it puts before our own validators';
    for a number YAML read as text, what to write instead."""
    given = err.get("input")
    if err["type"] == "float_type" and isinstance(given, str) and number_as_text(given) \
            and "e" in given.lower():
        return text_not_number(given)
    if "[key]" in err["loc"]:
        if given is None or isinstance(given, bool):  # `yes:` as a method label
            return (f"YAML read this key as {given!r} (an unquoted yes, no, on, off, ~ or "
                    f"null); quote it: 'yes':")
        return "this key is not one of those allowed: " + err["msg"].removeprefix(
            "Input should be ")
    if err["type"] == "string_type" and (given is None or isinstance(given, bool)):
        # YAML 1.1 reads yes/no/on/off/true/false as switches, ~ and null as nothing
        return (f"YAML read this as {given!r} (an unquoted yes, no, on, off, ~ or null); "
                f"quote it to give text: 'no'")
    if err["type"] in ("model_type", "model_attributes_type", "dict_type"):
        return "Input should be a mapping of keys (key: value)"  # not "instance of X"
    if err["type"] == "list_type" and isinstance(given, (int, float, str)):
        # `grid: {lr: 1.0e-4}`: one value where a list of them goes
        return f"give a list, even of one value: [{given!r}]"
    if err["type"] == "too_short" and isinstance(given, dict):
        return "give at least one"
    return err["msg"].removeprefix("Value error, ")


def number_as_text(text: str) -> bool:
    """`1e-3`: a number YAML 1.1 (PyYAML) reads as a string."""
    try:
        float(text)
    except ValueError:
        return False
    return any(c.isdigit() for c in text)  # not "nan" or "inf"


def text_not_number(text: str) -> str:
    """What to say of `text`, a number YAML read as text (`number_as_text`), and what to
    write instead. PyYAML takes an exponent only after a dot and with a sign: `1.0e2` is text
    as `1e-3` is (the message said "without a dot" of both), and `1.0e400` is no finite
    number to write."""
    why = ("YAML 1.1 reads an exponent as a number only after a dot and with a sign, as "
           "1.0e-3" if "e" in text.lower() else "it is quoted")
    value = float(text)
    fix = f"write {value!r}" if math.isfinite(value) else "write a finite number"
    return f"{text!r} is text to YAML, not a number ({why}); {fix}"


def options_model(cls: type[BaseModel], values: dict[str, Any], where: str) -> BaseModel:
    """Validate a registry entry's own options (dataset or model) into its frozen object."""
    try:
        return cls.model_validate(values)
    except ValidationError as err:
        first = err.errors()[0]
        fix = ""
        if first["type"] == "extra_forbidden" and len(first["loc"]) == 1:
            # what this dataset or model takes (MNIST takes no `verify`: its files are
            # always checked), nearest first: "Extra inputs are not permitted" said neither
            known = [name for name in cls.model_fields if name != "name"]
            near = did_you_mean(str(first["loc"][0]), known)
            takes = ", ".join(known) or "no option"
            fix = f"; {near + ' ' if near else ''}it takes: {takes}"
        raise UserError(f"{where}.{location(first)}: {message(first)}{fix}") from None
