-- The known-ids probe stays a probe on a cold table (the sync benchmark's hot path).
--
-- sql/100 put org_id first in ce_emails_provider_id and added `e.org_id = <org>` to the
-- lookup in ce_known_provider_ids. On a table the planner has no statistics for (a new
-- account's first sync; autovacuum lags a bulk load), every index whose leading column
-- the lookup names costs the same, and the primary key (org_id, id), created last, won
-- the tie: each probe walked the org's rows, and a 20,000-message first sync ran at half
-- its speed. The unique index still includes org_id (what a database distributed by org
-- needs), last; the probe names only the account and the provider id, which only this
-- index leads with, so there is nothing to tie with. The account's org is still checked
-- (the EXISTS below), and ON CONFLICT (org_id, account_id, provider_message_id) infers
-- the index by its set of columns, whatever their order.
DROP INDEX ce_emails_provider_id;
CREATE UNIQUE INDEX ce_emails_provider_id ON ce_emails (account_id, provider_message_id, org_id)
    WHERE provider_message_id IS NOT NULL;

DROP INDEX IF EXISTS ce_email_purged_ids_probe;
CREATE INDEX ce_email_purged_ids_probe ON ce_email_purged_ids (account_id, provider_message_id);

CREATE OR REPLACE FUNCTION ce_known_provider_ids(p_account_id uuid, p_provider_ids text[])
RETURNS SETOF text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT known.provider_message_id
    FROM unnest(p_provider_ids) AS listed(provider_message_id)
    CROSS JOIN LATERAL (
        SELECT e.provider_message_id FROM public.ce_emails e
        WHERE e.account_id = p_account_id
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
        WHERE p.account_id = p_account_id
          AND p.provider_message_id = listed.provider_message_id
        LIMIT 1
    ) AS purged
    WHERE EXISTS (
        SELECT 1 FROM public.ce_email_accounts a
        WHERE a.id = p_account_id
          AND a.org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
    )
$$;
