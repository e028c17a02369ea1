"""The base of every validated, frozen options object (configs, datasets, models).

A leaf module: it imports nothing of adamrepro but the error type, so that config.py, data/
and models/ can all build on it without importing one another.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, ValidationError

from adamrepro.errors import UserError


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


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def location(err: dict) -> str:
    return ".".join(str(part) for part in err["loc"]) or "(top level)"


def message(err: dict) -> str:
    """pydantic's message, without the "Value error, " it puts before our own validators'."""
    return err["msg"].removeprefix("Value error, ")


def options_model(cls: type[BaseModel], values: dict[str, Any], where: str) -> BaseModel:
    """Validate a registry entry's own options (dataset or model) into its frozen object."""
    try:
        return cls.model_validate(values)
    except ValidationError as err:
        first = err.errors()[0]
        raise UserError(f"{where}.{location(first)}: {message(first)}") from None
