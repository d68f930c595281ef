"""Base classes shared by every event model."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

Timestamp = AwareDatetime  # naive datetimes are rejected everywhere
Identifier = Annotated[str, Field(min_length=1, max_length=200)]


def _known_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {value!r}") from exc
    return value


TimeZone = Annotated[str, AfterValidator(_known_timezone)]  # an IANA name, e.g. Europe/Berlin
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=320)]

# ce_type -> event class, filled by Event.__init_subclass__.
EVENT_TYPES: dict[str, type[Event]] = {}
CE_TYPE_PREFIX = "contractmesh."


class Model(BaseModel):
    """A value object. Unknown fields are ignored so additive changes never break a consumer."""

    model_config = ConfigDict(frozen=True, extra="ignore", use_enum_values=False)


class Event(Model):
    """An event that travels on a topic. Concrete subclasses register their CloudEvents type."""

    ce_type: ClassVar[str] = ""
    # Name of the field whose value is the Kafka key.
    key_field: ClassVar[str] = "contract_id"

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if abstract:
            return
        cls.ce_type = CE_TYPE_PREFIX + cls.__name__
        EVENT_TYPES[cls.ce_type] = cls

    @property
    def key(self) -> str:
        return str(getattr(self, self.key_field))

    @property
    def subject(self) -> str:
        """CloudEvents subject: the business entity the event is about."""
        return self.key


class Origin(StrEnum):
    """Which side of a two-way sync a change started on; lets each side drop its own echo."""

    CONTRACT = "contract"
    ERP = "erp"


class Person(Model):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    email: Email
    timezone: str = "UTC"


class Link(Model):
    title: str
    url: str
