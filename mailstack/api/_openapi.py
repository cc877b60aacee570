"""JSON Schema of the Send API v3.1 request, for the served OpenAPI document."""

from __future__ import annotations

from typing import Any

_ADDRESS: dict[str, Any] = {
    "type": "object",
    "required": ["Email"],
    "properties": {"Email": {"type": "string", "format": "email"}, "Name": {"type": "string"}},
}
_ATTACHMENT: dict[str, Any] = {
    "type": "object",
    "required": ["ContentType", "Filename", "Base64Content"],
    "properties": {
        "ContentType": {"type": "string"},
        "Filename": {"type": "string"},
        "Base64Content": {"type": "string", "contentEncoding": "base64"},
        "ContentID": {"type": "string", "description": "InlinedAttachments only: referenced as cid:"},
    },
}
_RECIPIENTS: dict[str, Any] = {"type": "array", "items": _ADDRESS, "maxItems": 50}
_TRACKING: dict[str, Any] = {"type": "string", "enum": ["account_default", "disabled", "enabled"]}

_MESSAGE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "From": _ADDRESS,
        "Sender": _ADDRESS,
        "To": _RECIPIENTS,
        "Cc": _RECIPIENTS,
        "Bcc": _RECIPIENTS,
        "ReplyTo": _ADDRESS,
        "Subject": {"type": "string", "maxLength": 255},
        "TextPart": {"type": "string"},
        "HTMLPart": {"type": "string"},
        "TemplateLanguage": {"type": "boolean"},
        "Variables": {"type": "object"},
        "TemplateErrorReporting": _ADDRESS,
        "TemplateErrorDeliver": {"type": "boolean"},
        "CustomID": {"type": "string"},
        "EventPayload": {"type": "string"},
        "CustomCampaign": {
            "type": "string",
            "description": "Marks bulk mail: adds one-click List-Unsubscribe.",
        },
        "DeduplicateCampaign": {"type": "boolean"},
        "MonitoringCategory": {"type": "string"},
        "URLTags": {"type": "string"},
        "Headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "Attachments": {"type": "array", "items": _ATTACHMENT},
        "InlinedAttachments": {"type": "array", "items": _ATTACHMENT},
        "TrackOpens": _TRACKING,
        "TrackClicks": _TRACKING,
        "Priority": {"type": "integer", "minimum": 0, "maximum": 3},
    },
}

# Globals give every message its defaults; recipients are per message.
_GLOBALS: dict[str, Any] = {
    **_MESSAGE,
    "properties": {k: v for k, v in _MESSAGE["properties"].items() if k not in ("To", "Cc", "Bcc")},
}

SEND_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["Messages"],
    "properties": {
        "Messages": {"type": "array", "items": _MESSAGE, "minItems": 1, "maxItems": 50},
        "Globals": _GLOBALS,
        "SandboxMode": {"type": "boolean", "description": "Validate only: nothing is stored or sent."},
        "AdvanceErrorHandling": {"type": "boolean"},
    },
}

# Mailjet's error shape (see _errors.ApiError), inline where a response may be either.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["ErrorIdentifier", "ErrorCode", "StatusCode", "ErrorMessage"],
    "properties": {
        "ErrorIdentifier": {"type": "string"},
        "ErrorCode": {"type": "string"},
        "StatusCode": {"type": "integer"},
        "ErrorMessage": {"type": "string"},
        "ErrorInfo": {"type": "string"},
        "ErrorRelatedTo": {"type": "array", "items": {"type": "string"}},
    },
}
_RECIPIENT_RESULT: dict[str, Any] = {
    "type": "object",
    "required": ["Email", "MessageUUID", "MessageID", "MessageHref"],
    "properties": {
        "Email": {"type": "string"},
        "MessageUUID": {"type": "string"},
        "MessageID": {"type": "integer"},
        "MessageHref": {"type": "string"},
    },
}
_MESSAGE_RESULT: dict[str, Any] = {
    "type": "object",
    "required": ["Status"],
    "properties": {
        "Status": {"type": "string", "enum": ["success", "error"]},
        "CustomID": {"type": "string"},
        "To": {"type": "array", "items": _RECIPIENT_RESULT},
        "Cc": {"type": "array", "items": _RECIPIENT_RESULT},
        "Bcc": {"type": "array", "items": _RECIPIENT_RESULT},
        "Errors": {"type": "array", "items": ERROR_SCHEMA},
    },
}
SEND_RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["Messages"],
    "properties": {"Messages": {"type": "array", "items": _MESSAGE_RESULT}},
}
# A refused request (Mailjet's global error) or per-message results with errors among them.
SEND_REFUSED_SCHEMA: dict[str, Any] = {"anyOf": [ERROR_SCHEMA, SEND_RESPONSE_SCHEMA]}
