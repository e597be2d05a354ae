-- The access audit's SELECT policy, cheap for the rows nobody needs to hide (issue 11).
--
-- sql/150 hides from others an audit row that names an email they may not see (a private
-- mailbox's mail does not exist for them). Asking that of each named email, through the
-- SECURITY DEFINER ce_email_id_hidden, cost about 2 ms per timeline-page row: 120 ms for a
-- page of the audit trail, minutes for a compliance officer's export.
--
-- Each row now carries the mailboxes of the emails it names (account_ids), filled by a
-- trigger from ce_emails, whatever the writer sent. A row whose mailboxes are all visible
-- to the viewer at `metadata` (one InitPlan per statement, ce_email_accounts_at) names no
-- hidden email and passes at once; only the others (a private mailbox's reads, a mailbox
-- made private since, a row naming an email that was not found) are judged email by email
-- as before. Rows written before this migration are filled here. Not part of the sealed hash: the chain covers what was read, this is a
-- lookup aid, and it is kept by the table's owner only.

ALTER TABLE ce_email_access_audit ADD COLUMN account_ids uuid[];

-- The mailboxes of the emails a row names; null unless every one of them was found (an
-- email already purged, or one this role could not see, leaves the row to the exact check).
CREATE FUNCTION ce_email_access_audit_accounts(p_org_id uuid, p_email_ids uuid[])
RETURNS uuid[] LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN count(*) = (SELECT count(DISTINCT n) FROM unnest(p_email_ids) AS n)
                THEN array_agg(DISTINCT e.account_id) END
    FROM ce_emails e
    WHERE e.org_id = p_org_id AND e.id = ANY (p_email_ids)
$$;
REVOKE ALL ON FUNCTION ce_email_access_audit_accounts(uuid, uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ce_email_access_audit_accounts(uuid, uuid[]) TO ce_visibility;
UPDATE ce_email_access_audit SET account_ids = ce_email_access_audit_accounts(org_id, email_ids);

CREATE FUNCTION ce_email_access_audit_fill_accounts() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    NEW.account_ids := ce_email_access_audit_accounts(NEW.org_id, NEW.email_ids);
    RETURN NEW;
END
$$;
ALTER FUNCTION ce_email_access_audit_fill_accounts() OWNER TO ce_visibility;
REVOKE ALL ON FUNCTION ce_email_access_audit_fill_accounts() FROM PUBLIC;
CREATE TRIGGER ce_email_access_audit_fill_accounts
    BEFORE INSERT ON ce_email_access_audit
    FOR EACH ROW EXECUTE FUNCTION ce_email_access_audit_fill_accounts();

DROP POLICY org_select ON ce_email_access_audit;
CREATE POLICY org_select ON ce_email_access_audit FOR SELECT
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
           AND (NULLIF(current_setting('app.user_id', true), '') IS NULL
                OR account_ids <@ CAST((SELECT ce_email_accounts_at('metadata')) AS uuid[])
                OR NOT EXISTS (SELECT 1 FROM unnest(email_ids) AS named (id)
                               WHERE ce_email_id_hidden(named.id))));
