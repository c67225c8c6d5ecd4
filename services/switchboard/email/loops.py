"""Mail that must not reach an agent: auto-replies, bounces, list traffic and our own replies coming back.

Answering such mail (or routing it to an agent who answers it) is how mail loops start, so it is taken with 250,
counted by reason, and dropped. For the same reason our own automatic mail (the acknowledgement, ack.py) never
goes to a robot or no-reply sender (`may_auto_reply`).
"""

from __future__ import annotations

import re
from email.message import Message
from email.utils import parseaddr

_ROBOT_SENDERS = frozenset({"mailer-daemon", "postmaster", "mail-daemon", "mailer_daemon", "noreply-dmarc-support"})
_BULK_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply"})
_AUTOREPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-autoresponder", "x-auto-response")


def _local_part(address: str) -> str:
    return parseaddr(address)[1].partition("@")[0].lower()


# Senders that say in their name that nobody reads answers (RFC 3834 5: do not auto-reply to them).
_NO_REPLY_LOCAL_PARTS = re.compile(r"^(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|donotreply)(?:[-_.+].*)?$")


def may_auto_reply(address: str) -> bool:
    """Whether an automatic mail of ours (the acknowledgement) may go to this address: never to robots
    (mailer-daemon, postmaster …) nor to no-reply senders, whose answers would start or feed a loop."""
    local = _local_part(address)
    return bool(local) and local not in _ROBOT_SENDERS and not _NO_REPLY_LOCAL_PARTS.match(local)


def loop_reason(message: Message, envelope_sender: str | None, own_domain: str) -> str | None:  # noqa: PLR0911
    """Why this message is not for an agent ("auto_submitted", "bounce", …), or None when it is."""

    def get(name: str) -> str:
        return str(message.get(name, "") or "").strip().lower()

    auto = get("auto-submitted")
    if auto and auto != "no":
        return "auto_submitted"
    if any(message.get(h) is not None for h in _AUTOREPLY_HEADERS):
        return "auto_reply"
    if get("precedence") in _BULK_PRECEDENCE:
        return "precedence_" + get("precedence")
    if envelope_sender is not None and envelope_sender.strip("<> ") == "":
        # The null reverse-path is reserved for delivery notifications (RFC 5321 4.5.5).
        return "bounce"
    if _local_part(get("from")) in _ROBOT_SENDERS or (
        envelope_sender and _local_part(envelope_sender) in _ROBOT_SENDERS
    ):
        return "bounce"
    if message.get_content_type() == "multipart/report":
        return "bounce"
    if message.get("list-id") is not None or message.get("list-unsubscribe") is not None:
        return "mailing_list"
    if own_domain and get("message-id").rstrip(">").endswith("@" + own_domain.lower()):
        # One of our own agents' replies came back in (a forwarding rule or relay loop).
        return "own_reply"
    return None
