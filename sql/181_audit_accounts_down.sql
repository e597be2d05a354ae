DROP POLICY org_select ON ce_email_access_audit;
CREATE POLICY org_select ON ce_email_access_audit FOR SELECT
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
           AND NOT EXISTS (SELECT 1 FROM unnest(email_ids) AS named (id)
                           WHERE ce_email_id_hidden(named.id)));
DROP TRIGGER ce_email_access_audit_fill_accounts ON ce_email_access_audit;
DROP FUNCTION ce_email_access_audit_fill_accounts();
DROP FUNCTION ce_email_access_audit_accounts(uuid, uuid[]);
ALTER TABLE ce_email_access_audit DROP COLUMN account_ids;
