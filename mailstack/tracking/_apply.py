"""The compose step of tracking: per recipient copy, rewrite links and add the open pixel."""

from __future__ import annotations

import dataclasses
import html
import re
from dataclasses import dataclass

from mailstack.model import Envelope, MessageSpec

from ._links import insert_pixel, rewrite_links
from ._tokens import TrackingUrls

__all__ = ["Tracker", "tracking_wanted"]

# Mailjet's placeholder for the visible unsubscribe link ([[UNSUB_LINK_EN]], [[UNSUB_LINK_FR]], ...).
_UNSUB_LINK = re.compile(r"\[\[UNSUB_LINK(?:_[A-Z]{2})?\]\]")


def tracking_wanted(value: str, account_default: bool) -> bool:
    """A message's ``TrackOpens``/``TrackClicks`` against the account default."""
    if value == "enabled":
        return True
    if value == "disabled":
        return False
    return account_default


@dataclass(frozen=True, slots=True)
class Tracker:
    """Applies open and click tracking to envelopes before they are composed.

    ``opens``/``clicks`` are the account defaults (Mailjet's: both on).
    """

    urls: TrackingUrls
    opens: bool = True
    clicks: bool = True

    def apply(self, envelope: Envelope) -> Envelope:
        """The envelope with its HTML part tracked as its message asks; unchanged when nothing applies.

        ``[[UNSUB_LINK]]`` placeholders (Mailjet's, with or without a language suffix) become this
        recipient's unsubscribe page in both parts. Only the HTML part gets the pixel and tracked links:
        a text part's links stay readable.
        """
        spec = envelope.spec
        if spec.raw is not None:
            # Mail submitted over SMTP keeps the client's own MIME bytes: never rewritten.
            return envelope
        message_id = envelope.message_id
        text, document = spec.text, spec.html
        if text is not None and "[[UNSUB_LINK" in text:
            text = _UNSUB_LINK.sub(lambda _m: self.urls.unsubscribe_url(message_id), text)
        if document is not None:
            if "[[UNSUB_LINK" in document:
                # Substituted before link rewriting, so the unsubscribe link is itself never a tracked one.
                unsubscribe = html.escape(self.urls.unsubscribe_url(message_id), quote=True)
                document = _UNSUB_LINK.sub(lambda _m: unsubscribe, document)
            if tracking_wanted(spec.track_clicks, self.clicks):
                document, _links = rewrite_links(
                    document,
                    lambda position, url: self.urls.click_url(message_id, position, url),
                    skip_prefix=self.urls.base_url + "/unsubscribe/",
                )
            if tracking_wanted(spec.track_opens, self.opens):
                document = insert_pixel(document, self.urls.open_url(message_id))
        if text == spec.text and document == spec.html:
            return envelope
        tracked: MessageSpec = dataclasses.replace(spec, html=document, text=text)
        return dataclasses.replace(envelope, spec=tracked)
