"""Reconciliation: prove a mailbox complete by comparing the provider's ids with ours."""
