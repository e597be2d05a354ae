DROP FUNCTION IF EXISTS ce_accounts_due_for_reconcile(integer), ce_metrics_reconcile_age();
REVOKE SELECT (email_reconcile_interval_hours) ON ce_module_settings FROM ce_directory;
REVOKE SELECT (reconcile_verified_at) ON ce_email_accounts FROM ce_directory;
ALTER TABLE ce_module_settings DROP COLUMN IF EXISTS email_reconcile_interval_hours;
ALTER TABLE ce_email_accounts
    DROP COLUMN IF EXISTS reconcile_verified_at,
    DROP COLUMN IF EXISTS reconcile_provider_count,
    DROP COLUMN IF EXISTS reconcile_stored_count,
    DROP COLUMN IF EXISTS reconcile_missing_fetched,
    DROP COLUMN IF EXISTS reconcile_stale_removed;
