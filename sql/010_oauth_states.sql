-- OAuth `state`: the signed token the browser carries names a row here; the row makes it
-- single-use (used_at), holds the PKCE verifier and the validated return_to, and binds the
-- flow to the user and org that started it.
CREATE TABLE ce_oauth_states (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id         uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider       text NOT NULL CHECK (provider IN ('gmail', 'outlook')),
    code_verifier  text NOT NULL,
    return_to      text NOT NULL,
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ce_oauth_states_expiry ON ce_oauth_states (expires_at);

ALTER TABLE ce_oauth_states ENABLE ROW LEVEL SECURITY;
ALTER TABLE ce_oauth_states FORCE ROW LEVEL SECURITY;
CREATE POLICY org_select ON ce_oauth_states FOR SELECT
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY org_insert ON ce_oauth_states FOR INSERT
    WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY org_update ON ce_oauth_states FOR UPDATE
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY org_delete ON ce_oauth_states FOR DELETE
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);

GRANT SELECT, INSERT, UPDATE, DELETE ON ce_oauth_states TO ce_app;
