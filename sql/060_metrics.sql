-- Aggregates for Prometheus, readable without an org context. They return counts and ids,
-- never content, through SECURITY DEFINER functions owned by ce_directory, whose policies
-- below are SELECT-only and limited to the columns it was granted.
GRANT SELECT (org_id, status, direction) ON ce_emails TO ce_directory;
GRANT SELECT (org_id, type) ON ce_email_tracking_events TO ce_directory;
CREATE POLICY directory_lookup ON ce_emails FOR SELECT TO ce_directory USING (true);
CREATE POLICY directory_lookup ON ce_email_tracking_events FOR SELECT TO ce_directory
    USING (true);

CREATE FUNCTION ce_metrics_email_counts()
RETURNS TABLE (direction text, status text, total bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT e.direction, e.status, count(*) FROM public.ce_emails e GROUP BY 1, 2
$$;

CREATE FUNCTION ce_metrics_tracking_counts()
RETURNS TABLE (type text, total bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT t.type, count(*) FROM public.ce_email_tracking_events t GROUP BY 1
$$;

CREATE FUNCTION ce_metrics_sync_lag()
RETURNS TABLE (account_id uuid, provider text, status text, lag_seconds double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT a.id, a.provider, a.status,
           EXTRACT(EPOCH FROM now() - COALESCE(a.last_synced_at, a.created_at))::float8
    FROM public.ce_email_accounts a
    WHERE a.status <> 'disconnected'
$$;

ALTER FUNCTION ce_metrics_email_counts() OWNER TO ce_directory;
ALTER FUNCTION ce_metrics_tracking_counts() OWNER TO ce_directory;
ALTER FUNCTION ce_metrics_sync_lag() OWNER TO ce_directory;
REVOKE ALL ON FUNCTION ce_metrics_email_counts(), ce_metrics_tracking_counts(),
    ce_metrics_sync_lag() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ce_metrics_email_counts(), ce_metrics_tracking_counts(),
    ce_metrics_sync_lag() TO ce_app;
