-- The links of a sent email, rewritten to /t/c/{token}: the click target is looked up here,
-- server-side, so a token never carries a URL and a click can only lead to a stored link.
CREATE TABLE ce_email_tracked_links (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id      uuid NOT NULL,
    email_id    uuid NOT NULL,
    position    integer NOT NULL,
    url         text NOT NULL CHECK (url ~* '^https?://'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (email_id, position),
    FOREIGN KEY (org_id, email_id) REFERENCES ce_emails (org_id, id) ON DELETE CASCADE
);

ALTER TABLE ce_email_tracked_links ENABLE ROW LEVEL SECURITY;
ALTER TABLE ce_email_tracked_links FORCE ROW LEVEL SECURITY;
CREATE POLICY org_select ON ce_email_tracked_links FOR SELECT
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY org_insert ON ce_email_tracked_links FOR INSERT
    WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY org_update ON ce_email_tracked_links FOR UPDATE
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY org_delete ON ce_email_tracked_links FOR DELETE
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON ce_email_tracked_links TO ce_app;
