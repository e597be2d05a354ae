"""SQL of stored emails: `writes` (the sync pipeline's page writes) and `reads` (the
timeline and the detail).

The three names below are what the send path uses as `messages.repository.*`; they go
when it imports `app.messages.repository.reads`.
"""

from app.messages.repository.reads import get_email, links_of, partner_exists

__all__ = ["get_email", "links_of", "partner_exists"]
