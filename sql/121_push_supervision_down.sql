DROP FUNCTION IF EXISTS ce_accounts_push_renewal_due(integer);
DROP FUNCTION IF EXISTS ce_accounts_due_for_poll(integer, integer);
DROP FUNCTION IF EXISTS ce_poll_interval(text, interval, integer, integer);
DROP FUNCTION IF EXISTS ce_push_state(text, timestamptz, timestamptz);
REVOKE SELECT (push_registered_at, push_silent_since, last_mail_at)
    ON ce_email_accounts FROM ce_directory;
ALTER TABLE ce_email_accounts
    DROP COLUMN IF EXISTS push_registered_at,
    DROP COLUMN IF EXISTS push_last_notification_at,
    DROP COLUMN IF EXISTS push_silent_since,
    DROP COLUMN IF EXISTS push_rearmed,
    DROP COLUMN IF EXISTS last_mail_at;
