-- Row-level security: every table holding org data is ENABLEd and FORCEd (so even the
-- owner is subject to it) and has one policy per command on the current org.
-- NULLIF matters: on a pooled connection, after a transaction that set app.org_id
-- locally, the setting reads back as '' and ''::uuid would be an error, not "no rows".
-- With no org set every policy compares with NULL: no row is visible, no write passes.
DO $$
DECLARE
    t text;
    org_expr constant text := 'NULLIF(current_setting(''app.org_id'', true), '''')::uuid';
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'org_memberships', 'contacts', 'contact_emails', 'partners', 'partner_domains',
        'activities', 'notifications', 'documents',
        'ce_email_accounts', 'ce_emails', 'ce_email_links', 'ce_email_attachments',
        'ce_email_tracking_events', 'ce_module_settings', 'vault.secrets'
    ] LOOP
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY org_select ON %s FOR SELECT USING (org_id = %s)',
                       t, org_expr);
        EXECUTE format('CREATE POLICY org_insert ON %s FOR INSERT WITH CHECK (org_id = %s)',
                       t, org_expr);
        EXECUTE format('CREATE POLICY org_update ON %s FOR UPDATE USING (org_id = %s) '
                       'WITH CHECK (org_id = %s)', t, org_expr, org_expr);
        EXECUTE format('CREATE POLICY org_delete ON %s FOR DELETE USING (org_id = %s)',
                       t, org_expr);
    END LOOP;
END
$$;

-- The organisation row itself: visible only as the current org; the service never writes it.
ALTER TABLE organisations ENABLE ROW LEVEL SECURITY;
ALTER TABLE organisations FORCE ROW LEVEL SECURITY;
CREATE POLICY org_select ON organisations FOR SELECT
    USING (id = NULLIF(current_setting('app.org_id', true), '')::uuid);
