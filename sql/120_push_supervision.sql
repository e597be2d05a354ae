-- Supervised push and adaptive polling (issue 12).
--
-- A push channel is `off` (none registered), `expired` (past the expiry the provider
-- returned), `silent` (mail arrived that push never announced: the channel was registered
-- again and the mailbox is polled at the shortest interval until a notification arrives)
-- or `active`. `push_registered_at` with `push_expires_at` gives the lifetime the provider
-- granted, so renewal happens before expiry whatever that lifetime is.
ALTER TABLE ce_email_accounts
    ADD COLUMN push_registered_at        timestamptz,
    ADD COLUMN push_last_notification_at timestamptz,
    ADD COLUMN push_silent_since         timestamptz,
    ADD COLUMN push_rearmed              integer NOT NULL DEFAULT 0,
    ADD COLUMN last_mail_at              timestamptz;

-- Channels registered before this revision: count their lifetime from now.
UPDATE ce_email_accounts SET push_registered_at = now() WHERE push_channel_id IS NOT NULL;

GRANT SELECT (push_registered_at, push_silent_since, last_mail_at)
    ON ce_email_accounts TO ce_directory;

CREATE FUNCTION ce_push_state(p_channel text, p_expires timestamptz, p_silent timestamptz)
RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, public
AS $$
    SELECT CASE
        WHEN p_channel IS NULL THEN 'off'
        WHEN p_expires IS NOT NULL AND p_expires <= now() THEN 'expired'
        WHEN p_silent IS NOT NULL THEN 'silent'
        ELSE 'active'
    END
$$;

-- How often a mailbox is polled: at the org's interval when push is healthy; at the
-- minimum when push is silent; without push (off, expired) at the minimum while mail comes
-- in, backing off with the time since the last new mail, never beyond the org's interval.
CREATE FUNCTION ce_poll_interval(
    p_state text, p_idle_for interval, p_setting_minutes integer, p_min_seconds integer
)
RETURNS interval
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public
AS $$
    SELECT LEAST(
        make_interval(mins => p_setting_minutes),
        CASE
            WHEN p_state = 'active' THEN make_interval(mins => p_setting_minutes)
            WHEN p_state = 'silent' THEN make_interval(secs => p_min_seconds)
            ELSE GREATEST(make_interval(secs => p_min_seconds),
                          COALESCE(p_idle_for, interval '0') / 4)
        END)
$$;

CREATE FUNCTION ce_accounts_due_for_poll(p_min_seconds integer, p_limit integer)
RETURNS TABLE (org_id uuid, account_id uuid, provider text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT a.org_id, a.id, a.provider FROM public.ce_email_accounts a
    LEFT JOIN public.ce_module_settings s ON s.org_id = a.org_id
    WHERE a.status IN ('active', 'syncing', 'error')
      AND (a.last_synced_at IS NULL OR a.last_synced_at < now() - public.ce_poll_interval(
               public.ce_push_state(a.push_channel_id, a.push_expires_at, a.push_silent_since),
               now() - COALESCE(a.last_mail_at, a.created_at),
               COALESCE(s.email_sync_interval_minutes, 15),
               p_min_seconds))
    ORDER BY a.last_synced_at NULLS FIRST
    LIMIT p_limit
$$;

-- Channels to renew: within a day of expiry, or within half the lifetime the provider
-- granted when that is shorter (Graph's mail subscription lifetime is not a constant).
CREATE FUNCTION ce_accounts_push_renewal_due(p_limit integer)
RETURNS TABLE (org_id uuid, account_id uuid, provider text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT a.org_id, a.id, a.provider FROM public.ce_email_accounts a
    WHERE a.status IN ('active', 'syncing', 'error')
      AND a.push_channel_id IS NOT NULL
      AND a.push_expires_at < now() + LEAST(
              interval '1 day',
              COALESCE((a.push_expires_at - a.push_registered_at) / 2, interval '1 day'))
    ORDER BY a.push_expires_at
    LIMIT p_limit
$$;

ALTER FUNCTION ce_accounts_due_for_poll(integer, integer) OWNER TO ce_directory;
ALTER FUNCTION ce_accounts_push_renewal_due(integer) OWNER TO ce_directory;
REVOKE ALL ON FUNCTION ce_accounts_due_for_poll(integer, integer),
    ce_accounts_push_renewal_due(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ce_accounts_due_for_poll(integer, integer),
    ce_accounts_push_renewal_due(integer) TO ce_app;
