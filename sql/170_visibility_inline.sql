-- The visibility rule of sql/150, written into each policy instead of called per row
-- (issue 11, item 6: every screen fast at a million emails).
--
-- sql/150 put the rule in SQL functions (ce_email_visible, ce_email_id_visible) that every
-- policy called once per row. PostgreSQL cannot inline a SQL function whose body has a
-- subquery, so each call ran its own small executor: about 0.1 ms for a row that points
-- at an email (links, participants, ...), 0.25 ms with the nested lookups. A timeline page
-- reads ~150 such rows: 11 ms for its links, 6 ms for the audit row's RETURNING check.
--
-- Now the rule is one SQL text, made by ce_email_visibility_rule(row, level) below, and
-- each policy (and the content columns of ce_emails_visible) is created from it:
--   * which mailboxes the viewer may see at a level is asked once per statement, by an
--     InitPlan, (SELECT ce_email_accounts_at(level)): the viewer's own mailboxes and those
--     whose level allows it; a row then costs an array test;
--   * a shared thread is a probe of ce_email_thread_shares, only for rows of a mailbox the
--     level alone hides and that has shared threads at all;
--   * a row that points at an email (email_id) probes ce_emails by primary key, where
--     ce_emails' own policy applies as well.
-- The rule is unchanged; tests/visibility prove it for every table and view ce_app reads.

-- The mailboxes of the org whose mail at level `p_needed` the viewer may see: the viewer's
-- own, and those whose visibility allows the level. Runs as the caller: accounts carry
-- only the org policy.
CREATE FUNCTION ce_email_accounts_at(p_needed text)
RETURNS uuid[] LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT COALESCE(array_agg(a.id), '{}')
    FROM ce_email_accounts a
    WHERE a.org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
      AND (a.owner_user_id = NULLIF(current_setting('app.user_id', true), '')::uuid
           OR CASE p_needed
                  WHEN 'metadata' THEN a.visibility <> 'private'
                  WHEN 'subject' THEN a.visibility IN ('org', 'subject')
                  ELSE a.visibility = 'org'
              END)
$$;
REVOKE ALL ON FUNCTION ce_email_accounts_at(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ce_email_accounts_at(text) TO ce_app, ce_content, ce_visibility;

-- The mailboxes of the org with at least one shared thread: only their rows can be widened
-- by a share, so a row of any other mailbox the level hides is refused by two array tests
-- (a member filtering by a colleague's private mailbox: 605 -> 70 ms for 50,000 emails).
CREATE FUNCTION ce_email_accounts_sharing()
RETURNS uuid[] LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT COALESCE(array_agg(a.id), '{}')
    FROM ce_email_accounts a
    WHERE a.org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
      AND EXISTS (SELECT 1 FROM ce_email_thread_shares s
                  WHERE s.org_id = a.org_id AND s.account_id = a.id)
$$;
REVOKE ALL ON FUNCTION ce_email_accounts_sharing() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ce_email_accounts_sharing() TO ce_app, ce_content, ce_visibility;

-- The rule as SQL text, for a row `p_email` of ce_emails (an alias or table name) and the
-- level needed (an SQL expression: a quoted literal or a parameter's name). An empty
-- app.user_id is a service context (jobs, webhooks, the CLI), which sees the org's mail.
CREATE FUNCTION ce_email_visibility_rule(p_email text, p_needed text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT format(
        '(NULLIF(current_setting(''app.user_id'', true), '''') IS NULL'
        ' OR %1$s.account_id = ANY (CAST((SELECT ce_email_accounts_at(%2$s)) AS uuid[]))'
        ' OR (%1$s.account_id = ANY (CAST((SELECT ce_email_accounts_sharing()) AS uuid[]))'
        ' AND %1$s.provider_thread_id IS NOT NULL AND EXISTS ('
        'SELECT 1 FROM ce_email_thread_shares s WHERE s.org_id = %1$s.org_id'
        ' AND s.account_id = %1$s.account_id'
        ' AND s.provider_thread_id = %1$s.provider_thread_id)))',
        p_email, p_needed)
$$;

-- The same for a row that names an email by id (`p_email_id`, an SQL expression).
CREATE FUNCTION ce_email_reference_rule(p_email_id text, p_needed text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT format(
        '(NULLIF(current_setting(''app.user_id'', true), '''') IS NULL'
        ' OR EXISTS (SELECT 1 FROM ce_emails v'
        ' WHERE v.org_id = NULLIF(current_setting(''app.org_id'', true), '''')::uuid'
        ' AND v.id = %1$s AND %2$s))',
        p_email_id, ce_email_visibility_rule('v', p_needed))
$$;
REVOKE ALL ON FUNCTION ce_email_visibility_rule(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ce_email_reference_rule(text, text) FROM PUBLIC;

GRANT SELECT ON ce_email_thread_shares TO ce_content;

-- ce_email_visible stays the rule's function form, for the SECURITY DEFINER functions of
-- sql/150 that judge one email at a time.
DO $$
BEGIN
    EXECUTE format(
        'CREATE OR REPLACE FUNCTION ce_email_visible(p_account_id uuid, p_thread text, '
        'p_needed text) RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE AS $f$ '
        'SELECT %s FROM (SELECT NULLIF(current_setting(''app.org_id'', true), '''')::uuid, '
        'p_account_id, p_thread) AS e (org_id, account_id, provider_thread_id) $f$',
        ce_email_visibility_rule('e', 'p_needed'));
END
$$;
-- The SELECT policies, each: the org, and the level its content needs (as in sql/150).
DO $$
DECLARE
    spec text[];
    org_expr constant text := 'NULLIF(current_setting(''app.org_id'', true), '''')::uuid';
BEGIN
    DROP POLICY org_select ON ce_emails;
    EXECUTE format('CREATE POLICY org_select ON ce_emails FOR SELECT USING (org_id = %s AND %s)',
                   org_expr, ce_email_visibility_rule('ce_emails', quote_literal('metadata')));
    FOREACH spec SLICE 1 IN ARRAY ARRAY[
        -- participants and links are metadata
        ARRAY['ce_email_links', ce_email_reference_rule('email_id', '''metadata''')],
        ARRAY['ce_email_participants', ce_email_reference_rule('email_id', '''metadata''')],
        -- attachments (names included) and the body's links need the whole message
        ARRAY['ce_email_attachments', ce_email_reference_rule('email_id', '''org''')],
        ARRAY['ce_email_tracked_links', ce_email_reference_rule('email_id', '''org''')],
        -- a click names a link of the body; an open or a bounce is metadata
        ARRAY['ce_email_tracking_events', ce_email_reference_rule(
            'email_id', 'CASE WHEN link_url IS NULL THEN ''metadata'' ELSE ''org'' END')],
        -- an email's CE-04 activity carries its subject
        ARRAY['activities', 'source_email_id IS NULL OR '
              || ce_email_reference_rule('source_email_id', '''subject''')],
        -- PF-10 notifications about an email name it
        ARRAY['notifications', 'NOT (data ? ''email_id'') OR '
              || ce_email_reference_rule('(data->>''email_id'')::uuid', '''metadata''')]
    ] LOOP
        EXECUTE format('DROP POLICY org_select ON %s', spec[1]);
        EXECUTE format('CREATE POLICY org_select ON %s FOR SELECT USING (org_id = %s AND (%s))',
                       spec[1], org_expr, spec[2]);
    END LOOP;
END
$$;

-- The content columns of ce_emails_visible, from the same rule (same columns, same order).
DO $$
DECLARE
    others text;
BEGIN
    SELECT string_agg('e.' || quote_ident(column_name), ', ' ORDER BY ordinal_position)
    INTO others
    FROM information_schema.columns
    WHERE table_schema = 'public' AND table_name = 'ce_emails'
      AND column_name NOT IN ('subject', 'snippet', 'text_body', 'html_body');
    EXECUTE format(
        'CREATE OR REPLACE VIEW ce_emails_visible AS SELECT %1$s, '
        'CASE WHEN %2$s THEN e.subject END AS subject, '
        'CASE WHEN %2$s THEN e.snippet END AS snippet, '
        'CASE WHEN %3$s THEN e.text_body END AS text_body, '
        'CASE WHEN %3$s THEN e.html_body END AS html_body '
        'FROM ce_emails e',
        others,
        ce_email_visibility_rule('e', quote_literal('subject')),
        ce_email_visibility_rule('e', quote_literal('org')));
END
$$;

-- No policy calls it any more.
DROP FUNCTION ce_email_id_visible(uuid, text);
