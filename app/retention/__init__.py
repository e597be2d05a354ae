"""Retention: purge old mail (and a disconnected mailbox's mail) with a receipt."""
