"""The demo's mailboxes and their mail: referrals, lab results, scheduling, a newsletter,
replies, and the delivery failure a mistyped address brings back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

GMAIL_BOX = "dr.smith@riverside-clinic.test"
OUTLOOK_BOX = "dr.jones@riverside-clinic.onmicrosoft.com"


def _message(
    sender: str,
    to: str,
    subject: str,
    body: str,
    *,
    days_ago: float,
    cc: str | None = None,
    attachment: tuple[str, bytes] | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC) - timedelta(days=days_ago))
    msg["Message-ID"] = make_msgid(domain="demo.example")
    msg.set_content(body)
    msg.add_alternative(f"<p>{body}</p>", subtype="html")
    if attachment:
        msg.add_attachment(
            attachment[1], maintype="application", subtype="pdf", filename=attachment[0]
        )
    return bytes(msg)


def realistic_mail(box: str) -> list[tuple[str, bytes, float]]:
    """(folder, raw, days ago): referrals, lab results, scheduling, a newsletter, replies.
    Inbound mail goes to both doctors (To one, Cc the other), so the same message sits in
    two mailboxes: the timelines show it once."""
    pdf = b"%PDF-1.4\n% demo lab report\n"
    hospital = "cardiology.stmarys-hospital.org"
    both = f"{GMAIL_BOX}, {OUTLOOK_BOX}"
    specs: list[tuple[str, str, str, str, str, float, dict[str, Any]]] = [
        (
            "inbox",
            f"Dr. Amara Lee <a.lee@{hospital}>",
            both,
            "Referral: Jordan Patel, cardiology consult",
            "Please find the referral for Jordan Patel attached.",
            6,
            {"cc": "jordan.patel@example.net", "attachment": ("referral.pdf", pdf)},
        ),
        (
            "inbox",
            "Lab Results <results@lab.stmarys-hospital.org>",
            both,
            "Lab results ready",
            "The results for your request are available.",
            4,
            {},
        ),
        (
            "inbox",
            "Jordan Patel <jordan.patel@example.net>",
            both,
            "Question about my appointment",
            "Can we move it to Thursday?",
            3,
            {},
        ),
        (
            "inbox",
            "Maria Gomez <maria.gomez@gmail.com>",
            box,
            "Thank you!",
            "Thanks for the quick follow-up.",
            2,
            {},
        ),
        (
            "inbox",
            "Northside Imaging <scheduling@northside-imaging.com>",
            box,
            "MRI slot confirmed",
            "The MRI is booked for Monday 9am.",
            1.5,
            {},
        ),
        (
            "inbox",
            "Health Weekly <news@healthweekly.example>",
            box,
            "This week in health",
            "Our weekly newsletter.",
            1,
            {},
        ),
        (
            "sent",
            box,
            "Jordan Patel <jordan.patel@example.net>",
            "Re: Question about my appointment",
            "Thursday works, see you then.",
            2.5,
            {},
        ),
        (
            "sent",
            box,
            f"a.lee@{hospital}",
            "Re: Referral: Jordan Patel",
            "Thanks, we will see him next week.",
            5,
            {},
        ),
    ]
    return [
        (folder, _message(sender, to, subject, body, days_ago=days, **extra), days)
        for folder, sender, to, subject, body, days, extra in specs
    ]


def delivery_failure(mailbox: str, recipient: str, message_id: str) -> bytes:
    """A delivery status notification (RFC 3464) as a receiving MTA would send it."""
    return (
        f"From: Mail Delivery Subsystem <mailer-daemon@mx.exmaple.net>\r\nTo: {mailbox}\r\n"
        "Subject: Delivery Status Notification (Failure)\r\nMIME-Version: 1.0\r\n"
        f"Message-ID: {make_msgid(domain='mx.exmaple.net')}\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="dsn"\r\n\r\n'
        "--dsn\r\nContent-Type: text/plain\r\n\r\nThe address was not found.\r\n"
        "--dsn\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.exmaple.net\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n"
        "--dsn\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: {message_id}\r\nTo: {recipient}\r\n\r\n--dsn--\r\n"
    ).encode()
