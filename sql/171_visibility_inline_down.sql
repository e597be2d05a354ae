-- Back to sql/150's function-per-row rule.
CREATE FUNCTION ce_email_id_visible(p_email_id uuid, p_needed text)
RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT NULLIF(current_setting('app.user_id', true), '') IS NULL
        OR COALESCE((
            SELECT ce_email_visible(e.account_id, e.provider_thread_id, p_needed)
            FROM ce_emails e
            WHERE e.org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
              AND e.id = p_email_id), false)
$$;
REVOKE ALL ON FUNCTION ce_email_id_visible(uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ce_email_id_visible(uuid, text) TO ce_app;

CREATE OR REPLACE FUNCTION ce_email_visible(p_account_id uuid, p_thread text, p_needed text)
RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT NULLIF(current_setting('app.user_id', true), '') IS NULL
        OR EXISTS (
            SELECT 1 FROM ce_email_accounts a
            WHERE a.org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
              AND a.id = p_account_id
              AND (a.owner_user_id = NULLIF(current_setting('app.user_id', true), '')::uuid
                   OR CASE p_needed
                          WHEN 'metadata' THEN a.visibility <> 'private'
                          WHEN 'subject' THEN a.visibility IN ('org', 'subject')
                          ELSE a.visibility = 'org'
                      END
                   OR (p_thread IS NOT NULL AND EXISTS (
                          SELECT 1 FROM ce_email_thread_shares s
                          WHERE s.org_id = a.org_id AND s.account_id = a.id
                            AND s.provider_thread_id = p_thread))))
$$;

DROP POLICY org_select ON ce_emails;
CREATE POLICY org_select ON ce_emails FOR SELECT
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
           AND ce_email_visible(account_id, provider_thread_id, 'metadata'));

DO $$
DECLARE
    spec text[];
    org_expr constant text := 'NULLIF(current_setting(''app.org_id'', true), '''')::uuid';
    others text;
BEGIN
    FOREACH spec SLICE 1 IN ARRAY ARRAY[
        ARRAY['ce_email_links', 'ce_email_id_visible(email_id, ''metadata'')'],
        ARRAY['ce_email_participants', 'ce_email_id_visible(email_id, ''metadata'')'],
        ARRAY['ce_email_attachments', 'ce_email_id_visible(email_id, ''org'')'],
        ARRAY['ce_email_tracked_links', 'ce_email_id_visible(email_id, ''org'')'],
        ARRAY['ce_email_tracking_events',
              'ce_email_id_visible(email_id, CASE WHEN link_url IS NULL THEN ''metadata'' '
              'ELSE ''org'' END)'],
        ARRAY['activities',
              'source_email_id IS NULL OR ce_email_id_visible(source_email_id, ''subject'')'],
        ARRAY['notifications',
              'NOT (data ? ''email_id'') '
              'OR ce_email_id_visible((data->>''email_id'')::uuid, ''metadata'')']
    ] LOOP
        EXECUTE format('DROP POLICY org_select ON %s', spec[1]);
        EXECUTE format('CREATE POLICY org_select ON %s FOR SELECT USING (org_id = %s AND (%s))',
                       spec[1], org_expr, spec[2]);
    END LOOP;

    SELECT string_agg('e.' || quote_ident(column_name), ', ' ORDER BY ordinal_position)
    INTO others
    FROM information_schema.columns
    WHERE table_schema = 'public' AND table_name = 'ce_emails'
      AND column_name NOT IN ('subject', 'snippet', 'text_body', 'html_body');
    EXECUTE format(
        'CREATE OR REPLACE VIEW ce_emails_visible AS SELECT %s, '
        'CASE WHEN ce_email_visible(e.account_id, e.provider_thread_id, ''subject'') '
        '     THEN e.subject END AS subject, '
        'CASE WHEN ce_email_visible(e.account_id, e.provider_thread_id, ''subject'') '
        '     THEN e.snippet END AS snippet, '
        'CASE WHEN ce_email_visible(e.account_id, e.provider_thread_id, ''org'') '
        '     THEN e.text_body END AS text_body, '
        'CASE WHEN ce_email_visible(e.account_id, e.provider_thread_id, ''org'') '
        '     THEN e.html_body END AS html_body '
        'FROM ce_emails e', others);
END
$$;

REVOKE SELECT ON ce_email_thread_shares FROM ce_content;
DROP FUNCTION ce_email_reference_rule(text, text);
DROP FUNCTION ce_email_visibility_rule(text, text);
DROP FUNCTION ce_email_accounts_sharing();
DROP FUNCTION ce_email_accounts_at(text);
