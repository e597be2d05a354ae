-- Which messages of a listed page an account already has: the sync asks before every
-- fetch. Answered by one probe of the (account_id, provider_message_id) unique index per
-- listed id, whatever the planner statistics say. Under RLS the planner preferred
-- walking the org's rows (ce_emails_by_org) or the account's (the id list as a filter,
-- not an index condition) whenever its statistics did not know the org or the account
-- yet: during an account's first sync, until the next ANALYZE, every page then cost as
-- much as the whole mailbox stored so far (50 -> 150 ms a page over 20,000 messages).
-- The org is checked on the account (the caller's org context); only the ids come back.
GRANT SELECT (account_id, provider_message_id) ON ce_emails TO ce_directory;

CREATE FUNCTION ce_known_provider_ids(p_account_id uuid, p_provider_ids text[])
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
$$;

ALTER FUNCTION ce_known_provider_ids(uuid, text[]) OWNER TO ce_directory;
REVOKE ALL ON FUNCTION ce_known_provider_ids(uuid, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ce_known_provider_ids(uuid, text[]) TO ce_app;
