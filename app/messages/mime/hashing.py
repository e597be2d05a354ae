"""The content hash: the same message fetched from Gmail and from Graph hashes the same."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from app.messages.mime.bodies import visible
from app.messages.mime.headers import collapse
from app.messages.mime.model import ParsedAttachment


def normalised_content_hash(
    *,
    message_id: str | None,
    subject: str,
    sender: str | None,
    recipients: list[str],
    sent_at: datetime | None,
    body: str,
    attachments: list[ParsedAttachment],
) -> str:
    document = {
        "message_id": message_id,
        "subject": subject,
        "from": sender,
        "recipients": sorted(set(recipients)),
        "sent_at": sent_at.isoformat() if sent_at else None,
        "body": collapse(visible(body)),
        "attachments": sorted([a.filename, a.content_type, a.sha256] for a in attachments),
    }
    canonical = json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8", "replace")).hexdigest()
