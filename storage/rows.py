"""ORM objects for rows this code builds itself, without SQLModel's validating __init__.

`Action(**values)` costs ~0.2 ms (pydantic field defaults, validation and SQLAlchemy's attribute
events for ~30 fields); at ingest it was a tenth of the writer's CPU. `new_row` makes the same
object the way the ORM does when it loads a row (`ClassManager.new_instance`) and fills its
fields: ~10 µs. The values must already be valid (the API validated them with pydantic at the
edge); a missing required field is a bug and fails here, not in the database.
"""

from __future__ import annotations

from functools import cache
from typing import Any, TypeVar

from pydantic_core import PydanticUndefined
from sqlalchemy.orm import configure_mappers
from sqlmodel import SQLModel

Row = TypeVar("Row", bound=SQLModel)


@cache
def _shape(model: type[SQLModel]) -> tuple[dict[str, Any], dict[str, Any], frozenset[str]]:
    """(plain defaults, default factories, required fields) of a table model."""
    configure_mappers()  # the instrumented attributes need their mapper
    plain, factories, required = {}, {}, set()
    for name, field in model.model_fields.items():
        if field.default_factory is not None:
            factories[name] = field.default_factory
        elif field.default is PydanticUndefined:
            required.add(name)
        else:
            plain[name] = field.default
    return plain, factories, frozenset(required)


def new_row(table_model: type[Row], /, **values: Any) -> Row:
    """A transient `table_model` object holding `values` (and the model's defaults for the rest)."""
    plain, factories, required = _shape(table_model)
    missing = required - values.keys()
    if missing:
        raise TypeError(f"{table_model.__name__}: missing {', '.join(sorted(missing))}")
    row: Row = table_model._sa_class_manager.new_instance()  # type: ignore[attr-defined]
    fields = row.__dict__
    fields.update(plain)
    for name, make in factories.items():
        if name not in values:
            fields[name] = make()  # type: ignore[call-arg]
    fields.update(values)
    return row
