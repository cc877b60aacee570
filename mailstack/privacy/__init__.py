"""Privacy: blind indexes, the audit trail, envelope encryption at rest (the vault and its key
providers), and (as they land) retention and data-subject rights."""

from ._audit import AuditEntry, list_audit, record_audit
from ._blind import address_index
from ._consent import (
    ConsentError,
    ConsentRecord,
    ConsentThrottledError,
    all_consents,
    check_consent_link,
    confirm_consent,
    list_consents,
    request_consent,
    withdraw_consent,
)
from ._convert import convert_plaintext
from ._policy import (
    ACTIONS,
    POLICY_FILE,
    REQUIRED_CLASSES,
    Action,
    DataClass,
    RetentionError,
    RetentionPolicy,
    load_retention,
    parse_retention,
)
from ._providers import KeyProvider, KmsKeyProvider, LocalKeyProvider, provider_from_settings
from ._retention import (
    ERASED,
    TABLE_RULES,
    PurgeReport,
    RetentionJob,
    TableRule,
    check_policy_tables,
    policy_path,
    purge,
)
from ._subject import ERASURE_TABLES, ErasureReport, erase_subject, export_subject, vacuum_erased
from ._vault import RotationReport, ShreddedDataError, Vault, is_sealed

__all__ = [
    "ACTIONS",
    "ERASED",
    "ERASURE_TABLES",
    "POLICY_FILE",
    "REQUIRED_CLASSES",
    "TABLE_RULES",
    "Action",
    "AuditEntry",
    "ConsentError",
    "ConsentRecord",
    "ConsentThrottledError",
    "DataClass",
    "ErasureReport",
    "KeyProvider",
    "KmsKeyProvider",
    "LocalKeyProvider",
    "PurgeReport",
    "RetentionError",
    "RetentionJob",
    "RetentionPolicy",
    "RotationReport",
    "ShreddedDataError",
    "TableRule",
    "Vault",
    "address_index",
    "all_consents",
    "check_consent_link",
    "check_policy_tables",
    "confirm_consent",
    "convert_plaintext",
    "erase_subject",
    "export_subject",
    "is_sealed",
    "list_audit",
    "list_consents",
    "load_retention",
    "parse_retention",
    "policy_path",
    "provider_from_settings",
    "purge",
    "record_audit",
    "request_consent",
    "vacuum_erased",
    "withdraw_consent",
]
