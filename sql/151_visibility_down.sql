DROP POLICY org_select ON ce_email_access_audit;
CREATE POLICY org_select ON ce_email_access_audit FOR SELECT
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
DROP POLICY org_select ON ce_email_access_audit_emails;
CREATE POLICY org_select ON ce_email_access_audit_emails FOR SELECT
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
DROP FUNCTION ce_email_id_hidden(uuid);
DROP POLICY org_select ON documents;
CREATE POLICY org_select ON documents FOR SELECT
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
DROP FUNCTION ce_email_document_visible(uuid);
DROP POLICY visibility_lookup ON ce_email_attachments;
DROP POLICY visibility_lookup ON ce_emails;
REVOKE ALL ON ce_emails, ce_email_attachments, ce_email_accounts FROM ce_visibility;
REVOKE ALL ON SCHEMA public FROM ce_visibility;
CREATE OR REPLACE FUNCTION ce_email_links_record_activity() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO activities (org_id, type, direction, subject, occurred_at,
                            contact_id, partner_id, source_email_id)
    SELECT e.org_id, 'email', e.direction, e.subject, e.occurred_at,
           NEW.contact_id, NEW.partner_id, e.id
    FROM ce_emails e
    WHERE e.id = NEW.email_id
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
DROP VIEW ce_emails_visible;
GRANT SELECT ON ce_emails TO ce_app;
REVOKE ALL ON ce_emails FROM ce_content;
REVOKE ALL ON SCHEMA public FROM ce_content;
DO $$
DECLARE
    t text;
    org_expr constant text := 'NULLIF(current_setting(''app.org_id'', true), '''')::uuid';
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'ce_emails', 'ce_email_links', 'ce_email_participants', 'ce_email_attachments',
        'ce_email_tracked_links', 'ce_email_tracking_events', 'activities', 'notifications'
    ] LOOP
        EXECUTE format('DROP POLICY org_select ON %s', t);
        EXECUTE format('CREATE POLICY org_select ON %s FOR SELECT USING (org_id = %s)',
                       t, org_expr);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ce_email_visible(uuid, text, text) FROM ce_content, ce_visibility;
DROP FUNCTION ce_email_id_visible(uuid, text);
DROP FUNCTION ce_email_visible(uuid, text, text);
DROP TABLE ce_email_thread_shares;
ALTER TABLE ce_module_settings DROP COLUMN email_default_visibility;
UPDATE ce_email_accounts SET visibility = 'private' WHERE visibility IN ('subject', 'metadata');
ALTER TABLE ce_email_accounts DROP CONSTRAINT ce_email_accounts_visibility_check;
ALTER TABLE ce_email_accounts ADD CONSTRAINT ce_email_accounts_visibility_check
    CHECK (visibility IN ('org', 'private'));
