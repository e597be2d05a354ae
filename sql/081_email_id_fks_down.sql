ALTER TABLE ce_email_participants
    DROP CONSTRAINT ce_email_participants_email_id_fkey,
    ADD CONSTRAINT ce_email_participants_org_id_email_id_fkey
        FOREIGN KEY (org_id, email_id) REFERENCES ce_emails (org_id, id) ON DELETE CASCADE;
ALTER TABLE ce_email_tracking_events
    DROP CONSTRAINT ce_email_tracking_events_email_id_fkey,
    ADD CONSTRAINT ce_email_tracking_events_org_id_email_id_fkey
        FOREIGN KEY (org_id, email_id) REFERENCES ce_emails (org_id, id) ON DELETE CASCADE;
