from contract_schema import VerdictStatus

from invoice_validator import samples as s
from mesh_testing import unique_name

from .harness import Running


def test_smoke(validator: Running) -> None:
    cid, vendor = unique_name("C"), unique_name("V")
    validator.produce(s.contract(cid, vendor=vendor))
    inv = s.invoice(unique_name("INV"), contract_ref=cid, vendor=vendor)
    validator.produce(inv)
    v = validator.verdict(inv.invoice_id)
    assert v.status is VerdictStatus.APPROVED
