"""Provider clients: one MailProvider protocol, a Gmail and a Graph driver, OAuth clients.

Domain code imports from `app.providers.base` (the protocol and neutral types), `.errors`
(the typed failures), `.failures` (what a failure means for a mailbox) and `.registry`
(a driver by the contract's provider value), and never sees a wire format.
"""
