DROP FUNCTION IF EXISTS ce_orgs_with_email_retention(integer);
REVOKE SELECT (email_retention_days) ON ce_module_settings FROM ce_directory;

-- the known-ids probe as sql/100 left it
CREATE OR REPLACE FUNCTION ce_known_provider_ids(p_account_id uuid, p_provider_ids text[])
RETURNS SETOF text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT known.provider_message_id
    FROM unnest(p_provider_ids) AS listed(provider_message_id)
    CROSS JOIN LATERAL (
        SELECT e.provider_message_id FROM public.ce_emails e
        WHERE e.org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
          AND e.account_id = p_account_id
          AND e.provider_message_id = listed.provider_message_id
        LIMIT 1
    ) AS known
    WHERE EXISTS (
        SELECT 1 FROM public.ce_email_accounts a
        WHERE a.id = p_account_id
          AND a.org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
    )
$$;

DROP INDEX IF EXISTS ce_email_attachments_by_document;
DROP INDEX IF EXISTS ce_email_links_by_email;
DROP INDEX IF EXISTS activities_by_source_email;
DROP TABLE IF EXISTS ce_email_purged_ids;
DROP TABLE IF EXISTS ce_email_purges;
ALTER TABLE ce_module_settings
    DROP CONSTRAINT IF EXISTS ce_module_settings_retention_covers_history,
    DROP COLUMN IF EXISTS email_retention_days;
