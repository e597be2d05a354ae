-- Expired OAuth states are purged by a periodic job that runs without an org context: it
-- finds the orgs holding states a day past expiry through this SECURITY DEFINER function
-- (owned by ce_directory, which may read only the org id and expiry), then deletes each
-- org's states in that org's own RLS transaction.
GRANT SELECT (org_id, expires_at) ON ce_oauth_states TO ce_directory;
CREATE POLICY directory_lookup ON ce_oauth_states FOR SELECT TO ce_directory USING (true);

CREATE FUNCTION ce_orgs_with_expired_oauth_states(p_limit integer)
RETURNS TABLE (org_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT DISTINCT s.org_id FROM public.ce_oauth_states s
    WHERE s.expires_at < now() - interval '1 day'
    LIMIT p_limit
$$;

ALTER FUNCTION ce_orgs_with_expired_oauth_states(integer) OWNER TO ce_directory;
REVOKE ALL ON FUNCTION ce_orgs_with_expired_oauth_states(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ce_orgs_with_expired_oauth_states(integer) TO ce_app;
