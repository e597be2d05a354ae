-- Back to sql/140's probe and sql/100's org-first index.
DROP INDEX IF EXISTS ce_email_purged_ids_probe;
DROP INDEX ce_emails_provider_id;
CREATE UNIQUE INDEX ce_emails_provider_id ON ce_emails (org_id, account_id, provider_message_id)
    WHERE provider_message_id IS NOT NULL;

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
    UNION ALL
    SELECT purged.provider_message_id
    FROM unnest(p_provider_ids) AS listed(provider_message_id)
    CROSS JOIN LATERAL (
        SELECT p.provider_message_id FROM public.ce_email_purged_ids p
        WHERE p.org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
          AND p.account_id = p_account_id
          AND p.provider_message_id = listed.provider_message_id
        LIMIT 1
    ) AS purged
    WHERE EXISTS (
        SELECT 1 FROM public.ce_email_accounts a
        WHERE a.id = p_account_id
          AND a.org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
    )
$$;
