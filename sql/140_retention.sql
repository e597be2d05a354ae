-- Retention and purge receipts (issue 11, item 5).
--
-- email_retention_days: null keeps mail forever; otherwise 30 to 3,650 days and never
-- shorter than the sync window, or a sync would fetch mail that the next purge deletes.
-- The CHECKs repeat the API's validation (a NULL history means its default, 30).
ALTER TABLE ce_module_settings
    ADD COLUMN email_retention_days integer
        CONSTRAINT ce_module_settings_retention_range
        CHECK (email_retention_days BETWEEN 30 AND 3650),
    ADD CONSTRAINT ce_module_settings_retention_covers_history
        CHECK (email_retention_days IS NULL
               OR email_retention_days >= coalesce(email_sync_history_days, 30));

-- One receipt per account and purge: what was deleted, counted per table. account_id has
-- no foreign key on purpose: a disconnect purge deletes the account, its receipt stays.
-- A retention receipt is created by its first batch and its counts grow with each later
-- batch in that batch's own transaction, so it always matches what was committed.
CREATE TABLE ce_email_purges (
    org_id      uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    scope       text NOT NULL CHECK (scope IN ('retention', 'disconnect')),
    account_id  uuid,
    counts      jsonb NOT NULL DEFAULT '{}'::jsonb,
    cutoff      timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id)
);
CREATE INDEX ce_email_purges_by_time ON ce_email_purges (org_id, created_at DESC, id DESC);

-- Provider ids of mail that retention deleted, so that no later sync or reconciliation
-- fetches it again (ce_known_provider_ids below answers them as known). occurred_at is
-- the message's time, for a reconciliation that asks only about its window.
CREATE TABLE ce_email_purged_ids (
    org_id               uuid NOT NULL,
    account_id           uuid NOT NULL,
    provider_message_id  text NOT NULL,
    occurred_at          timestamptz NOT NULL,
    purged_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, account_id, provider_message_id),
    FOREIGN KEY (org_id, account_id) REFERENCES ce_email_accounts (org_id, id) ON DELETE CASCADE
);
CREATE INDEX ce_email_purged_ids_by_time
    ON ce_email_purged_ids (org_id, account_id, occurred_at);

-- Deleting a document looks for the attachments that name it (the SET NULL action and
-- the purge's "still used by a kept email?" check): an index, not a scan of every
-- attachment of the org.
CREATE INDEX ce_email_attachments_by_document ON ce_email_attachments (org_id, document_id)
    WHERE document_id IS NOT NULL;
-- Deleting an email runs its cascades once per email: "links of this email" and
-- "activities of this email" had only partial indexes (by contact, by partner) that such
-- a query cannot use, so each deleted email cost a scan of the org's links and activities.
CREATE INDEX ce_email_links_by_email ON ce_email_links (org_id, email_id);
CREATE INDEX activities_by_source_email ON activities (org_id, source_email_id)
    WHERE source_email_id IS NOT NULL;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['ce_email_purges', 'ce_email_purged_ids'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY org_select ON %I FOR SELECT '
                       'USING (org_id = NULLIF(current_setting(''app.org_id'', true), '''')::uuid)', t);
        EXECUTE format('CREATE POLICY org_insert ON %I FOR INSERT '
                       'WITH CHECK (org_id = NULLIF(current_setting(''app.org_id'', true), '''')::uuid)', t);
        EXECUTE format('CREATE POLICY org_update ON %I FOR UPDATE '
                       'USING (org_id = NULLIF(current_setting(''app.org_id'', true), '''')::uuid) '
                       'WITH CHECK (org_id = NULLIF(current_setting(''app.org_id'', true), '''')::uuid)', t);
        EXECUTE format('CREATE POLICY org_delete ON %I FOR DELETE '
                       'USING (org_id = NULLIF(current_setting(''app.org_id'', true), '''')::uuid)', t);
    END LOOP;
END
$$;

-- Receipts are written and their counts grown, never deleted by the service; purged ids
-- are only added (an account's go with it).
GRANT SELECT, INSERT, UPDATE ON ce_email_purges TO ce_app;
GRANT SELECT, INSERT ON ce_email_purged_ids TO ce_app;

-- The known-ids probe (sql/070, sql/100) also answers purged ids, so neither a windowed
-- full sync, a change feed naming an old message, nor a reconciliation fetches them again.
-- Still one index probe per listed id and table (LATERAL ... LIMIT 1), whatever the
-- planner's statistics say.
GRANT SELECT (org_id, account_id, provider_message_id) ON ce_email_purged_ids TO ce_directory;
CREATE POLICY directory_lookup ON ce_email_purged_ids FOR SELECT TO ce_directory USING (true);

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

-- The daily purge runs without an org context: it finds the orgs that set a retention
-- through this SECURITY DEFINER function (org ids only), then purges each org in that
-- org's own RLS transactions.
GRANT SELECT (org_id, email_retention_days) ON ce_module_settings TO ce_directory;

CREATE FUNCTION ce_orgs_with_email_retention(p_limit integer)
RETURNS TABLE (org_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT s.org_id FROM public.ce_module_settings s
    WHERE s.email_retention_days IS NOT NULL
    ORDER BY s.org_id
    LIMIT p_limit
$$;

ALTER FUNCTION ce_orgs_with_email_retention(integer) OWNER TO ce_directory;
REVOKE ALL ON FUNCTION ce_orgs_with_email_retention(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ce_orgs_with_email_retention(integer) TO ce_app;
