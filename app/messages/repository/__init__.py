"""SQL of stored emails: `writes` (the sync pipeline's page writes) and `reads` (the
timeline and the detail)."""
