"""Messages: MIME parsing (``mime``), HTML sanitising (``sanitize``), storing synced mail
(``store``), the timeline and detail (``timeline``, ``endpoints``)."""
