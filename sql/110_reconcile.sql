-- Reconciliation (issue 12): the outcome of the last comparison of a mailbox's provider ids
-- with the stored ones, per account, and the org setting of how often it runs.
-- The outcome lives on the account row (one row per account, already org-scoped by RLS);
-- every column is NULL until the first reconciliation.
ALTER TABLE ce_email_accounts
    ADD COLUMN reconcile_verified_at timestamptz,
    ADD COLUMN reconcile_provider_count integer,
    ADD COLUMN reconcile_stored_count integer,
    ADD COLUMN reconcile_missing_fetched integer,
    ADD COLUMN reconcile_stale_removed integer;

ALTER TABLE ce_module_settings
    ADD COLUMN email_reconcile_interval_hours integer
        CHECK (email_reconcile_interval_hours BETWEEN 1 AND 168);

-- The periodic job and /metrics find accounts without an org context, through id-only
-- SECURITY DEFINER functions owned by ce_directory (as sql/030 and sql/060 do).
GRANT SELECT (reconcile_verified_at) ON ce_email_accounts TO ce_directory;
GRANT SELECT (email_reconcile_interval_hours) ON ce_module_settings TO ce_directory;

-- Accounts whose last verification is older than their org's interval. An account is
-- first due one interval after its first completed sync (a first sync is itself a full
-- listing of the window).
CREATE FUNCTION ce_accounts_due_for_reconcile(p_limit integer)
RETURNS TABLE (org_id uuid, account_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT a.org_id, a.id FROM public.ce_email_accounts a
    LEFT JOIN public.ce_module_settings s ON s.org_id = a.org_id
    WHERE a.status IN ('active', 'syncing', 'error')
      AND a.last_synced_at IS NOT NULL
      AND COALESCE(a.reconcile_verified_at, a.last_synced_at) <
          now() - make_interval(hours => COALESCE(s.email_reconcile_interval_hours, 24))
    ORDER BY COALESCE(a.reconcile_verified_at, a.last_synced_at)
    LIMIT p_limit
$$;

-- Seconds since each mailbox was last verified complete (only mailboxes verified once).
CREATE FUNCTION ce_metrics_reconcile_age()
RETURNS TABLE (account_id uuid, age_seconds double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT a.id, EXTRACT(EPOCH FROM now() - a.reconcile_verified_at)::float8
    FROM public.ce_email_accounts a
    WHERE a.status <> 'disconnected' AND a.reconcile_verified_at IS NOT NULL
$$;

ALTER FUNCTION ce_accounts_due_for_reconcile(integer) OWNER TO ce_directory;
ALTER FUNCTION ce_metrics_reconcile_age() OWNER TO ce_directory;
REVOKE ALL ON FUNCTION ce_accounts_due_for_reconcile(integer), ce_metrics_reconcile_age()
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ce_accounts_due_for_reconcile(integer), ce_metrics_reconcile_age()
    TO ce_app;
