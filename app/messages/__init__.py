"""Messages: MIME parsing (``mime``), HTML sanitising (``sanitize``), storage, timeline."""

from app.messages.mime import ParsedAttachment, ParsedMessage, Participant, parse_message
from app.messages.sanitize import sanitize_html

__all__ = ["ParsedAttachment", "ParsedMessage", "Participant", "parse_message", "sanitize_html"]
