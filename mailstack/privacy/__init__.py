"""Privacy: the audit trail, consents, retention and data-subject rights (export, erasure), built on
the personal-data marks of :mod:`mailstack.storage` and its vault (re-exported here)."""

# The vault, its key providers and blind indexes live in mailstack.storage (which seals its own columns);
# re-exported here, where the privacy features are.
from mailstack.storage import (
    KeyProvider,
    KmsKeyProvider,
    LocalKeyProvider,
    RotationReport,
    ShreddedDataError,
    Vault,
    address_index,
    is_sealed,
    provider_from_settings,
)

from ._audit import AuditEntry, list_audit, record_audit
from ._consent import (
    ConsentError,
    ConsentRecord,
    ConsentThrottledError,
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
from ._subject import (
    ERASURE_STEPS,
    ERASURE_TABLES,
    EXPORT_SECTIONS,
    ErasureReport,
    check_subject_coverage,
    erase_subject,
    export_subject,
    vacuum_erased,
)

__all__ = [
    "ACTIONS",
    "ERASED",
    "ERASURE_STEPS",
    "ERASURE_TABLES",
    "EXPORT_SECTIONS",
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
    "check_consent_link",
    "check_policy_tables",
    "check_subject_coverage",
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
