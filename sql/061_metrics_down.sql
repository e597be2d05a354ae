DROP FUNCTION IF EXISTS ce_metrics_email_counts(), ce_metrics_tracking_counts(),
    ce_metrics_sync_lag();
DROP POLICY IF EXISTS directory_lookup ON ce_emails;
DROP POLICY IF EXISTS directory_lookup ON ce_email_tracking_events;
REVOKE ALL ON ce_emails, ce_email_tracking_events FROM ce_directory;
