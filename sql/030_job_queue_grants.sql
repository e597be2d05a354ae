-- The job queue (procrastinate's own schema, applied by the migration just before this
-- file) holds no org data: job arguments are ids only. ce_app runs the API and the workers,
-- so it reads and writes the queue's tables through procrastinate's functions.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.relname, c.relkind FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relname LIKE 'procrastinate%'
               AND c.relkind IN ('r', 'S', 'v') LOOP
        IF r.relkind = 'S' THEN
            EXECUTE format('GRANT USAGE, SELECT, UPDATE ON SEQUENCE %I TO ce_app', r.relname);
        ELSE
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE %I TO ce_app',
                           r.relname);
        END IF;
    END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS signature FROM pg_proc p
             JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'public' AND p.proname LIKE 'procrastinate%' LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO ce_app', r.signature);
    END LOOP;
END
$$;

-- Cross-org lookups that work without an org context: a push notification names a mailbox
-- or a subscription, not an org; the poller looks for accounts that are due. They return
-- ids only and are owned by ce_directory, a NOLOGIN role whose one policy lets it read
-- accounts (and the sync interval setting) of every org. Nothing else is exposed.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ce_directory') THEN
        CREATE ROLE ce_directory NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO ce_directory;
GRANT SELECT (id, org_id, provider, email_address, status, last_synced_at, push_channel_id,
              push_expires_at, created_at)
    ON ce_email_accounts TO ce_directory;
GRANT SELECT (org_id, email_sync_interval_minutes) ON ce_module_settings TO ce_directory;
CREATE POLICY directory_lookup ON ce_email_accounts FOR SELECT TO ce_directory USING (true);
CREATE POLICY directory_lookup ON ce_module_settings FOR SELECT TO ce_directory USING (true);

CREATE FUNCTION ce_find_accounts_by_address(p_provider text, p_address text)
RETURNS TABLE (org_id uuid, account_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT a.org_id, a.id FROM public.ce_email_accounts a
    WHERE a.provider = p_provider AND a.email_address = lower(btrim(p_address))
      AND a.status IN ('active', 'syncing', 'error')
$$;

CREATE FUNCTION ce_find_account_by_push_channel(p_provider text, p_channel text)
RETURNS TABLE (org_id uuid, account_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT a.org_id, a.id FROM public.ce_email_accounts a
    WHERE a.provider = p_provider AND a.push_channel_id = p_channel
$$;

CREATE FUNCTION ce_accounts_due_for_sync(p_limit integer)
RETURNS TABLE (org_id uuid, account_id uuid, provider text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT a.org_id, a.id, a.provider FROM public.ce_email_accounts a
    LEFT JOIN public.ce_module_settings s ON s.org_id = a.org_id
    WHERE a.status IN ('active', 'syncing', 'error')
      AND (a.last_synced_at IS NULL OR a.last_synced_at <
           now() - make_interval(mins => COALESCE(s.email_sync_interval_minutes, 15)))
    ORDER BY a.last_synced_at NULLS FIRST
    LIMIT p_limit
$$;

CREATE FUNCTION ce_accounts_push_expiring(p_before timestamptz, p_limit integer)
RETURNS TABLE (org_id uuid, account_id uuid, provider text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT a.org_id, a.id, a.provider FROM public.ce_email_accounts a
    WHERE a.status IN ('active', 'syncing', 'error')
      AND a.push_channel_id IS NOT NULL AND a.push_expires_at < p_before
    ORDER BY a.push_expires_at
    LIMIT p_limit
$$;

ALTER FUNCTION ce_find_accounts_by_address(text, text) OWNER TO ce_directory;
ALTER FUNCTION ce_find_account_by_push_channel(text, text) OWNER TO ce_directory;
ALTER FUNCTION ce_accounts_due_for_sync(integer) OWNER TO ce_directory;
ALTER FUNCTION ce_accounts_push_expiring(timestamptz, integer) OWNER TO ce_directory;
REVOKE ALL ON FUNCTION ce_find_accounts_by_address(text, text),
    ce_find_account_by_push_channel(text, text), ce_accounts_due_for_sync(integer),
    ce_accounts_push_expiring(timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ce_find_accounts_by_address(text, text),
    ce_find_account_by_push_channel(text, text), ce_accounts_due_for_sync(integer),
    ce_accounts_push_expiring(timestamptz, integer) TO ce_app;
