"""The typed requests every entry point hands to the services: a page of a list, the filter
of the stored completions, a metadata update.

The `/v1` routes, the `/api/ai` routes and the Python facade all build these (from a query
string, a seed-style query string, keyword arguments) and pass them on whole, so a new filter
or paging option is declared here once. Light on purpose: the facade's remote mode imports it
without the server's machinery.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aiservice.errors import validation_error
from aiservice.services.metadata import Metadata

Order = Literal["asc", "desc"]
Typed = TypeVar("Typed", bound=BaseModel)


class Page(BaseModel):
    """Paging of a list: the query of a list route, the arguments of the facade."""

    limit: int = Field(default=20, ge=1, le=100)
    order: Order = "asc"
    after: str | None = None


class CompletionFilter(Page):
    """Which stored chat completions to list: by model, by metadata pairs (all must match)."""

    model: str | None = None
    metadata: Metadata = Field(default_factory=dict)


class MetadataUpdate(BaseModel):
    """The body of an update: the metadata that replaces a stored object's metadata."""

    model_config = ConfigDict(extra="forbid")

    metadata: Metadata | None


def parsed(shape: type[Typed], values: Any) -> Typed:
    """`values` (a dict, or a JSON document as text) as `shape`; a validation problem is the
    same 400 a route answers for it."""
    try:
        if isinstance(values, str):
            return shape.model_validate_json(values)
        return shape.model_validate(values)
    except ValidationError as exc:
        raise validation_error(exc.errors()) from None
