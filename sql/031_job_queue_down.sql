DROP FUNCTION IF EXISTS ce_stale_syncs(timestamptz, integer);
ALTER TABLE ce_email_accounts DROP COLUMN IF EXISTS sync_state, DROP COLUMN IF EXISTS sync_phase,
    DROP COLUMN IF EXISTS sync_processed, DROP COLUMN IF EXISTS sync_estimate,
    DROP COLUMN IF EXISTS sync_started_at, DROP COLUMN IF EXISTS sync_finished_at,
    DROP COLUMN IF EXISTS sync_heartbeat_at;
DROP FUNCTION IF EXISTS ce_find_accounts_by_address(text, text),
    ce_find_account_by_push_channel(text, text), ce_accounts_due_for_sync(integer),
    ce_accounts_push_expiring(timestamptz, integer);
DROP POLICY IF EXISTS directory_lookup ON ce_email_accounts;
DROP POLICY IF EXISTS directory_lookup ON ce_module_settings;
REVOKE ALL ON ce_email_accounts, ce_module_settings FROM ce_directory;
REVOKE ALL ON SCHEMA public FROM ce_directory;
-- procrastinate's objects
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relname LIKE 'procrastinate%' AND c.relkind = 'r'
    LOOP
        EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', r.relname);
    END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS signature FROM pg_proc p
             JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'public' AND p.proname LIKE 'procrastinate%' LOOP
        EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', r.signature);
    END LOOP;
    FOR r IN SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE n.nspname = 'public' AND t.typname LIKE 'procrastinate%' AND t.typtype IN ('c', 'e')
    LOOP
        EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', r.typname);
    END LOOP;
END
$$;
