-- Two high-volume tables whose rows only ever name an email of their own org by
-- construction now reference the email's primary key alone:
-- - ce_email_participants is derived: only the triggers on ce_emails write it, copying
--   the email's own org_id and id;
-- - ce_email_tracking_events: opens are written from a join with the email row (its
--   org_id), clicks and bounces from the email looked up under the org's RLS context.
-- The composite (org_id, id) key made each row's referential check
-- `org_id = $1 AND id = $2`, a query whose plan a connection keeps for its lifetime:
-- planned while ce_emails was empty or its statistics unknown (a new database's first
-- sync), it walked the org's rows through ce_emails_by_org for every participant or open,
-- quadratic in the mailbox. `id = $1` has one possible index, the primary key.
ALTER TABLE ce_email_participants
    DROP CONSTRAINT ce_email_participants_org_id_email_id_fkey,
    ADD CONSTRAINT ce_email_participants_email_id_fkey
        FOREIGN KEY (email_id) REFERENCES ce_emails (id) ON DELETE CASCADE;
ALTER TABLE ce_email_tracking_events
    DROP CONSTRAINT ce_email_tracking_events_org_id_email_id_fkey,
    ADD CONSTRAINT ce_email_tracking_events_email_id_fkey
        FOREIGN KEY (email_id) REFERENCES ce_emails (id) ON DELETE CASCADE;
