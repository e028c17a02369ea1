"""The base of every validated, frozen options object (configs, datasets, models).

A leaf module: it imports nothing of adamrepro but the error type, so that config.py, data/
and models/ can all build on it without importing one another.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from adamrepro.errors import UserError


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def location(err: dict) -> str:
    return ".".join(str(part) for part in err["loc"]) or "(top level)"


def options_model(cls: type[BaseModel], values: dict[str, Any], where: str) -> BaseModel:
    """Validate a registry entry's own options (dataset or model) into its frozen object."""
    try:
        return cls.model_validate(values)
    except ValidationError as err:
        first = err.errors()[0]
        raise UserError(f"{where}.{location(first)}: {first['msg']}") from None
