"""Invoices from ERP/AP and the validator's verdicts."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import Field, model_validator

from .base import Event, Identifier, Model, Timestamp
from .money import Amount, Currency

Quantity = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


class InvoiceLine(Model):
    line_no: Annotated[int, Field(ge=1)]
    item_code: Identifier
    description: str = ""
    quantity: Quantity
    unit: Annotated[str, Field(min_length=1)]
    # A credit line (e.g. an SLA service credit) carries a negative price and amount.
    unit_price: Amount
    amount: Amount
    service_date: date = Field(description="start of the service period; prices come from the version in force")
    service_period_end: date | None = None
    milestone_ref: str | None = None


class InvoiceReceived(Event):
    """An invoice posted by ERP/AP on ap.invoice.received.v1, keyed by contract id (or vendor id)."""

    key_field: ClassVar[str] = "routing_key"

    invoice_id: Identifier
    tenant_id: Identifier
    vendor_id: Identifier
    invoice_number: Identifier
    contract_ref: str | None = None
    issue_date: date
    due_date: date | None = None
    currency: Currency
    payment_terms_days: Annotated[int, Field(ge=0)] | None = None
    lines: Annotated[tuple[InvoiceLine, ...], Field(min_length=1)]
    total: Amount | None = None
    source_system: str = "erp"
    received_at: Timestamp

    @model_validator(mode="after")
    def _line_numbers_unique(self) -> InvoiceReceived:
        numbers = [line.line_no for line in self.lines]
        if len(numbers) != len(set(numbers)):
            raise ValueError("lines: line_no values must be unique")
        return self

    @property
    def routing_key(self) -> str:
        return self.contract_ref or self.vendor_id


class VerdictStatus(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"
    NEEDS_REVIEW = "needs-review"


class PricedBand(Model):
    """The part of a graduated line priced in one tier band [from_quantity, to_quantity).

    The bounds are the band's, on the tier basis's axis (per invoice, or cumulative since the first
    approved invoice); `quantity` is how many of this line's units fell in it.
    """

    from_quantity: Quantity
    to_quantity: Quantity | None = None
    quantity: Quantity
    unit_price: Amount
    amount: Amount


class LineVerdict(Model):
    line_no: int
    status: VerdictStatus
    item_code: str
    billed_unit_price: Amount
    billed_amount: Amount
    expected_unit_price: Amount | None = None
    expected_amount: Amount | None = None
    variance: Amount = Decimal(0)
    reason_codes: tuple[str, ...] = ()
    message: str = ""
    # How the expected amount of a graduated line splits across tier bands; empty for other lines.
    bands: tuple[PricedBand, ...] = ()


class InvoiceValidated(Event):
    """The verdict for one invoice, on ap.invoice.validated.v1 (keyed by contract id, else vendor id)."""

    key_field: ClassVar[str] = "routing_key"

    invoice_id: Identifier
    tenant_id: Identifier
    vendor_id: Identifier
    invoice_number: Identifier
    contract_id: str | None = None
    contract_version: int | None = None
    status: VerdictStatus
    currency: Currency
    lines: tuple[LineVerdict, ...] = ()
    reason_codes: tuple[str, ...] = ()
    messages: tuple[str, ...] = ()
    total_billed: Amount
    total_expected: Amount
    prevented_overpayment: Amount = Decimal(0)
    validated_at: Timestamp

    @property
    def routing_key(self) -> str:
        return self.contract_id or self.vendor_id
