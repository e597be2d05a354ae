-- The token vault. Ciphertexts are AES-256-GCM made in the service (the key ring never
-- reaches the database); the account id and the token kind are the associated data, so a
-- ciphertext copied to another row does not decrypt. The app role cannot read this schema:
-- it goes through the SECURITY DEFINER functions below, owned by ce_vault, which is itself
-- subject to RLS, so a function can only ever touch the current org's secrets.
CREATE SCHEMA vault AUTHORIZATION ce_vault;

CREATE TABLE vault.secrets (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id      uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    account_id  uuid NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('access_token', 'refresh_token')),
    key_id      text NOT NULL,
    nonce       bytea NOT NULL,
    ciphertext  bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, kind),
    FOREIGN KEY (org_id, account_id) REFERENCES ce_email_accounts (org_id, id) ON DELETE CASCADE
);
ALTER TABLE vault.secrets OWNER TO ce_vault;

CREATE FUNCTION vault.put_secret(p_account_id uuid, p_kind text, p_key_id text,
                                 p_nonce bytea, p_ciphertext bytea)
RETURNS uuid
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, vault
AS $$
    INSERT INTO vault.secrets (org_id, account_id, kind, key_id, nonce, ciphertext)
    VALUES (NULLIF(current_setting('app.org_id', true), '')::uuid,
            p_account_id, p_kind, p_key_id, p_nonce, p_ciphertext)
    ON CONFLICT (account_id, kind) DO UPDATE
        SET key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce,
            ciphertext = EXCLUDED.ciphertext, updated_at = now()
    RETURNING id
$$;

CREATE FUNCTION vault.get_secret(p_account_id uuid, p_kind text)
RETURNS TABLE (key_id text, nonce bytea, ciphertext bytea)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, vault
AS $$
    SELECT s.key_id, s.nonce, s.ciphertext FROM vault.secrets s
    WHERE s.account_id = p_account_id AND s.kind = p_kind
$$;

CREATE FUNCTION vault.delete_secrets(p_account_id uuid)
RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, vault
AS $$
    WITH gone AS (DELETE FROM vault.secrets WHERE account_id = p_account_id RETURNING 1)
    SELECT count(*)::integer FROM gone
$$;

ALTER FUNCTION vault.put_secret(uuid, text, text, bytea, bytea) OWNER TO ce_vault;
ALTER FUNCTION vault.get_secret(uuid, text) OWNER TO ce_vault;
ALTER FUNCTION vault.delete_secrets(uuid) OWNER TO ce_vault;
