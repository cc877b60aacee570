"""Privacy: blind indexes, the audit trail, and (as they land) encryption at rest, retention and
data-subject rights."""

from ._audit import AuditEntry, list_audit, record_audit
from ._blind import address_index

__all__ = ["AuditEntry", "address_index", "list_audit", "record_audit"]
