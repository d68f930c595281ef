"""Commands the registry accepts, as plain pydantic values (no I/O)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import Field

from contract_schema.base import Identifier, Model, Person, TimeZone
from contract_schema.contract import ContractTerms, Direction, Party


class TermsInput(ContractTerms):
    """ContractTerms as a client sends them: the registry assigns `version` (and `effective_from`)."""

    version: Annotated[int, Field(ge=1)] = 1
    effective_from: date | None = None  # type: ignore[assignment]  # defaults to effective_date / the amendment's


class ContractDraft(Model):
    """Body of POST /v1/contracts."""

    title: Annotated[str, Field(min_length=1, max_length=500)]
    counterparty: Party
    direction: Direction
    contract_type: Annotated[str, Field(min_length=1, max_length=100)]
    business_unit: Annotated[str, Field(max_length=200)] | None = None  # the column's width
    owner: Person
    backup_owner: Person | None = None
    timezone: TimeZone = "UTC"
    tags: tuple[Annotated[str, Field(min_length=1, max_length=100)], ...] = ()
    terms: TermsInput


class Amendment(Model):
    """Body of POST /v1/contracts/{id}/amendments: the full terms of the new version."""

    effective_from: date
    reason: Annotated[str, Field(min_length=1, max_length=2000)]
    terms: TermsInput
    title: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    owner: Person | None = None
    backup_owner: Person | None = None
    business_unit: Annotated[str, Field(max_length=200)] | None = None  # the column's width
    tags: tuple[Annotated[str, Field(min_length=1, max_length=100)], ...] | None = None


class Termination(Model):
    terminated_on: date | None = None  # defaults to today in the contract's time zone
    reason: str | None = None


class Renewal(Model):
    renewal_term_months: Annotated[int, Field(ge=1, le=120)] | None = None  # default: the contract's term


class MilestoneCompletion(Model):
    evidence_ref: str | None = None
    completed_at: date | None = None  # informational; the event carries the registry clock's time


ContractId = Identifier
