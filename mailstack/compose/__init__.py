"""Message composition: Envelope -> RFC 5322/MIME bytes plus the SMTP envelope (VERP return path).

Public API:

* :func:`compose` builds one recipient's message (:class:`ComposedMessage`);
* :class:`ComposeSettings` holds the deployment-wide knobs (hostname, bounce domain, token signer, ...);
* :func:`verp_address` / :func:`parse_verp` create and check signed per-message return paths;
* :func:`parse_submission` checks a message submitted over SMTP and applies the ingress fix-ups
  (:class:`Submission`); :func:`compose` then delivers it as submitted (see ``_raw``);
* :func:`header_problems` is the one policy for the header fields a sender adds (the Send API checks it
  at acceptance, :func:`compose` renders with the same code);
* :func:`domain_to_ascii` gives a domain's A-label (IDNA) form;
* :class:`ComposeError` (a ``ValueError``) reports input that cannot be composed safely.
"""

from __future__ import annotations

from mailstack.compose._composer import compose
from mailstack.compose._errors import ComposeError
from mailstack.compose._headers import domain_to_ascii
from mailstack.compose._policy import HeaderProblem, header_problems
from mailstack.compose._raw import Submission, parse_submission
from mailstack.compose._types import ComposedMessage, ComposeSettings
from mailstack.compose._verp import parse_verp, verp_address

__all__ = [
    "ComposeError",
    "ComposeSettings",
    "ComposedMessage",
    "HeaderProblem",
    "Submission",
    "compose",
    "domain_to_ascii",
    "header_problems",
    "parse_submission",
    "parse_verp",
    "verp_address",
]
