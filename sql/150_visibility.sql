-- Visibility levels per mailbox, enforced by row-level security (issue 11, items 1-3).
--
-- Levels: org (everything), subject (no bodies, attachments or links), metadata
-- (participants, times, direction, links only), private (no row at all). The owner always
-- sees everything; everyone else, admins included, sees what the level allows, or what a
-- per-thread share (ce_email_thread_shares) widens to org. One helper decides it,
-- ce_email_visible(account, thread, level needed), and every policy below calls it (or
-- ce_email_id_visible, which looks up the email and calls it).
--
-- app.user_id empty means a service context (sync, send and tracking jobs, webhooks, the
-- CLI): those act for the mailbox and see all of the org's mail. app/db/rls.py sets
-- app.user_id for every request, so a member's statement is always judged as that member.

ALTER TABLE ce_email_accounts DROP CONSTRAINT ce_email_accounts_visibility_check;
ALTER TABLE ce_email_accounts ADD CONSTRAINT ce_email_accounts_visibility_check
    CHECK (visibility IN ('org', 'subject', 'metadata', 'private'));

ALTER TABLE ce_module_settings ADD COLUMN email_default_visibility text
    CHECK (email_default_visibility IN ('org', 'subject', 'metadata', 'private'));

-- A thread an owner shared at org level: its messages, later ones included, show to the org.
CREATE TABLE ce_email_thread_shares (
    org_id              uuid NOT NULL,
    account_id          uuid NOT NULL,
    provider_thread_id  text NOT NULL,
    level               text NOT NULL DEFAULT 'org' CHECK (level = 'org'),
    shared_by           uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, account_id, provider_thread_id),
    FOREIGN KEY (org_id, account_id) REFERENCES ce_email_accounts (org_id, id) ON DELETE CASCADE
);
ALTER TABLE ce_email_thread_shares ENABLE ROW LEVEL SECURITY;
ALTER TABLE ce_email_thread_shares FORCE ROW LEVEL SECURITY;
CREATE POLICY org_select ON ce_email_thread_shares FOR SELECT
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY org_insert ON ce_email_thread_shares FOR INSERT
    WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY org_update ON ce_email_thread_shares FOR UPDATE
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY org_delete ON ce_email_thread_shares FOR DELETE
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON ce_email_thread_shares TO ce_app;

-- The one rule. Runs as the caller (accounts and shares carry only the org policy, so no
-- recursion): one primary-key probe of the account, one of the shares when the level alone
-- does not allow it.
CREATE FUNCTION ce_email_visible(p_account_id uuid, p_thread text, p_needed text)
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

-- The same rule for rows that point at an email (links, attachments, activities, ...).
CREATE FUNCTION ce_email_id_visible(p_email_id uuid, p_needed text)
RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT NULLIF(current_setting('app.user_id', true), '') IS NULL
        OR COALESCE((
            SELECT ce_email_visible(e.account_id, e.provider_thread_id, p_needed)
            FROM ce_emails e
            WHERE e.org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
              AND e.id = p_email_id), false)
$$;

REVOKE ALL ON FUNCTION ce_email_visible(uuid, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ce_email_id_visible(uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ce_email_visible(uuid, text, text) TO ce_app;
GRANT EXECUTE ON FUNCTION ce_email_id_visible(uuid, text) TO ce_app;

-- SELECT policies: the org, and the level each table's content needs.
DROP POLICY org_select ON ce_emails;
CREATE POLICY org_select ON ce_emails FOR SELECT
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
           AND ce_email_visible(account_id, provider_thread_id, 'metadata'));

DO $$
DECLARE
    spec text[];
    org_expr constant text := 'NULLIF(current_setting(''app.org_id'', true), '''')::uuid';
BEGIN
    FOREACH spec SLICE 1 IN ARRAY ARRAY[
        -- participants and links are metadata
        ARRAY['ce_email_links', 'ce_email_id_visible(email_id, ''metadata'')'],
        ARRAY['ce_email_participants', 'ce_email_id_visible(email_id, ''metadata'')'],
        -- attachments (names included) and the body's links need the whole message
        ARRAY['ce_email_attachments', 'ce_email_id_visible(email_id, ''org'')'],
        ARRAY['ce_email_tracked_links', 'ce_email_id_visible(email_id, ''org'')'],
        -- a click names a link of the body; an open or a bounce is metadata
        ARRAY['ce_email_tracking_events',
              'ce_email_id_visible(email_id, CASE WHEN link_url IS NULL THEN ''metadata'' '
              'ELSE ''org'' END)'],
        -- an email's CE-04 activity carries its subject
        ARRAY['activities',
              'source_email_id IS NULL OR ce_email_id_visible(source_email_id, ''subject'')'],
        -- PF-10 notifications about an email name it
        ARRAY['notifications',
              'NOT (data ? ''email_id'') '
              'OR ce_email_id_visible((data->>''email_id'')::uuid, ''metadata'')']
    ] LOOP
        EXECUTE format('DROP POLICY org_select ON %s', spec[1]);
        EXECUTE format('CREATE POLICY org_select ON %s FOR SELECT USING (org_id = %s AND (%s))',
                       spec[1], org_expr, spec[2]);
    END LOOP;
END
$$;

-- Content columns: a row-level policy cannot hide single columns, so ce_app may not read
-- subject, snippet and the bodies from ce_emails at all (column privileges; it may still
-- write them). It reads them through ce_emails_visible, a plain view of ce_emails whose
-- content columns pass through the same helper: null where the viewer's level hides them.
-- The view belongs to ce_content (no login, no BYPASSRLS), so ce_emails' policies still
-- apply inside it; it has no WHERE of its own, so it needs no security barrier and the
-- planner flattens it (the timeline keeps its index scans).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ce_content') THEN
        CREATE ROLE ce_content NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;
ALTER ROLE ce_content NOSUPERUSER NOBYPASSRLS;
GRANT USAGE ON SCHEMA public TO ce_content;
GRANT SELECT ON ce_emails TO ce_content;
GRANT EXECUTE ON FUNCTION ce_email_visible(uuid, text, text) TO ce_content;

DO $$
DECLARE
    readable text;
BEGIN
    SELECT string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position) INTO readable
    FROM information_schema.columns
    WHERE table_schema = 'public' AND table_name = 'ce_emails'
      AND column_name NOT IN ('subject', 'snippet', 'text_body', 'html_body');
    REVOKE SELECT ON ce_emails FROM ce_app;
    EXECUTE format('GRANT SELECT (%s) ON ce_emails TO ce_app', readable);
END
$$;

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
        'CREATE VIEW ce_emails_visible AS SELECT %s, '
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
ALTER VIEW ce_emails_visible OWNER TO ce_content;
GRANT SELECT ON ce_emails_visible TO ce_app;

-- The activity a link makes copies the email's subject, which the link's writer may not be
-- allowed to read (ce_app cannot read ce_emails.subject): the function runs as the tables'
-- owner. The copy is guarded where it is read: the activities policy above shows an
-- email's activity only at `subject` level or wider.
CREATE OR REPLACE FUNCTION ce_email_links_record_activity() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO activities (org_id, type, direction, subject, occurred_at,
                            contact_id, partner_id, source_email_id)
    SELECT e.org_id, 'email', e.direction, e.subject, e.occurred_at,
           NEW.contact_id, NEW.partner_id, e.id
    FROM ce_emails e
    WHERE e.org_id = NEW.org_id AND e.id = NEW.email_id
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION ce_email_links_record_activity() FROM PUBLIC;

-- PF-11 documents that sync made of attachments carry the attachment's file name. The
-- documents table does not know its email, and the attachments that do are hidden by their
-- own policy, so the question "is this document an attachment of mail I may not see whole"
-- is asked by ce_email_document_visible as ce_visibility: a role that reads the org's
-- attachments and emails unfiltered by level (its own org-only policies) and answers with
-- a boolean only.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ce_visibility') THEN
        CREATE ROLE ce_visibility NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;
ALTER ROLE ce_visibility NOSUPERUSER NOBYPASSRLS;
GRANT USAGE ON SCHEMA public TO ce_visibility;
GRANT SELECT (org_id, id, account_id, provider_thread_id) ON ce_emails TO ce_visibility;
GRANT SELECT (org_id, email_id, document_id) ON ce_email_attachments TO ce_visibility;
GRANT SELECT (org_id, id, owner_user_id, visibility) ON ce_email_accounts TO ce_visibility;
GRANT SELECT (org_id, account_id, provider_thread_id) ON ce_email_thread_shares
    TO ce_visibility;
GRANT EXECUTE ON FUNCTION ce_email_visible(uuid, text, text) TO ce_visibility;
CREATE POLICY visibility_lookup ON ce_emails FOR SELECT TO ce_visibility
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY visibility_lookup ON ce_email_attachments FOR SELECT TO ce_visibility
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
-- ce_email_attachments_by_document (sql/140) serves ce_email_document_visible below.

CREATE FUNCTION ce_email_document_visible(p_document_id uuid)
RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT NULLIF(current_setting('app.user_id', true), '') IS NULL
        OR NOT EXISTS (
            SELECT 1 FROM ce_email_attachments att
            JOIN ce_emails e ON e.org_id = att.org_id AND e.id = att.email_id
            WHERE att.org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
              AND att.document_id = p_document_id
              AND NOT ce_email_visible(e.account_id, e.provider_thread_id, 'org'))
$$;
ALTER FUNCTION ce_email_document_visible(uuid) OWNER TO ce_visibility;
REVOKE ALL ON FUNCTION ce_email_document_visible(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ce_email_document_visible(uuid) TO ce_app;

DROP POLICY org_select ON documents;
CREATE POLICY org_select ON documents FOR SELECT
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
           AND ce_email_document_visible(id));

-- The access audit names the emails that were read. For others than the mailbox's owner a
-- private mailbox's mail must not exist, so an audit row naming one is hidden from them
-- too; rows of purged mail (the audit outlives retention) stay visible. "Does this email
-- exist and is it hidden from me" needs to see the hidden row: asked as ce_visibility.
GRANT SELECT (org_id, id, account_id, provider_thread_id) ON ce_emails TO ce_visibility;
CREATE FUNCTION ce_email_id_hidden(p_email_id uuid)
RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT NULLIF(current_setting('app.user_id', true), '') IS NOT NULL
        AND EXISTS (
            SELECT 1 FROM ce_emails e
            WHERE e.org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
              AND e.id = p_email_id
              AND NOT ce_email_visible(e.account_id, e.provider_thread_id, 'metadata'))
$$;
ALTER FUNCTION ce_email_id_hidden(uuid) OWNER TO ce_visibility;
REVOKE ALL ON FUNCTION ce_email_id_hidden(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ce_email_id_hidden(uuid) TO ce_app;

DROP POLICY org_select ON ce_email_access_audit;
CREATE POLICY org_select ON ce_email_access_audit FOR SELECT
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
           AND NOT EXISTS (SELECT 1 FROM unnest(email_ids) AS named (id)
                           WHERE ce_email_id_hidden(named.id)));
DROP POLICY org_select ON ce_email_access_audit_emails;
CREATE POLICY org_select ON ce_email_access_audit_emails FOR SELECT
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
           AND NOT ce_email_id_hidden(email_id));
