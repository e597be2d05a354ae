DROP TRIGGER IF EXISTS ce_emails_participants_inserted ON ce_emails;
DROP TRIGGER IF EXISTS ce_emails_participants_updated ON ce_emails;
DROP TRIGGER IF EXISTS ce_emails_fill_participants ON ce_emails;
DROP TABLE IF EXISTS ce_email_participants;
DROP FUNCTION IF EXISTS ce_emails_participants_inserted(), ce_emails_participants_updated(),
    ce_emails_fill_participants();
DROP INDEX IF EXISTS ce_emails_unsynced_sends;
ALTER TABLE ce_emails
    DROP COLUMN IF EXISTS participant_addresses,
    DROP COLUMN IF EXISTS participant_domains;
DROP FUNCTION IF EXISTS ce_email_link_addresses(text, text, text, jsonb, jsonb, jsonb),
    ce_email_domain_suffixes(text[]);
