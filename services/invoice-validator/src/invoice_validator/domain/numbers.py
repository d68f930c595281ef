"""How invoice numbers are compared for the duplicate check; pure."""

from __future__ import annotations

import re
import unicodedata

# Whitespace and the separators AP systems drop when they match invoice numbers.
_SEPARATORS = re.compile(r"[\s\-‐-―/\\._]+")


def normalize_invoice_number(number: str) -> str:
    """The form of an invoice number that the duplicate check compares.

    Unicode compatibility form (NFKC: full-width digits become ASCII), case-folded, with every run of
    whitespace and of the separators '-', '/', '\\', '.', '_' (and the Unicode dashes) removed; so
    "INV-2026/001", " inv 2026 001 " and "Inv.2026_001" are one number. A number made only of
    separators keeps its trimmed, case-folded form, so it is never confused with an empty one.
    """
    folded = unicodedata.normalize("NFKC", number).casefold().strip()
    return _SEPARATORS.sub("", folded) or folded


def duplicate_key(tenant_id: str, vendor_id: str, invoice_number: str) -> str:
    """The key under which the first invoice of a tenant's vendor with a number is remembered."""
    return f"{tenant_id}|{vendor_id}|{normalize_invoice_number(invoice_number)}"
