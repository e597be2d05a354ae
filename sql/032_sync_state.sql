-- What a progress bar needs about the current or last sync of an account.
ALTER TABLE ce_email_accounts
    ADD COLUMN sync_state        text NOT NULL DEFAULT 'idle'
                                 CHECK (sync_state IN ('idle', 'queued', 'running', 'failed')),
    ADD COLUMN sync_phase        text,
    ADD COLUMN sync_processed    integer NOT NULL DEFAULT 0,
    ADD COLUMN sync_estimate     integer,
    ADD COLUMN sync_started_at   timestamptz,
    ADD COLUMN sync_finished_at  timestamptz,
    ADD COLUMN sync_heartbeat_at timestamptz;

GRANT SELECT (sync_state, sync_heartbeat_at, sync_started_at) ON ce_email_accounts TO ce_directory;

-- Syncs whose worker died: running with no heartbeat for a while (the sweeper fails and
-- re-queues them).
CREATE FUNCTION ce_stale_syncs(p_before timestamptz, p_limit integer)
RETURNS TABLE (org_id uuid, account_id uuid, provider text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT a.org_id, a.id, a.provider FROM public.ce_email_accounts a
    WHERE a.sync_state = 'running' AND COALESCE(a.sync_heartbeat_at, a.sync_started_at) < p_before
    LIMIT p_limit
$$;
ALTER FUNCTION ce_stale_syncs(timestamptz, integer) OWNER TO ce_directory;
REVOKE ALL ON FUNCTION ce_stale_syncs(timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ce_stale_syncs(timestamptz, integer) TO ce_app;
