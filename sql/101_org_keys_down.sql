-- Back to the keys of revision 0009 (names included, which the earlier downgrades drop).

-- 1. The composite foreign keys that lean on the (org_id, ...) keys.
ALTER TABLE contact_emails DROP CONSTRAINT contact_emails_org_id_contact_id_fkey;
ALTER TABLE partner_domains DROP CONSTRAINT partner_domains_org_id_partner_id_fkey;
ALTER TABLE activities
    DROP CONSTRAINT activities_org_id_contact_id_fkey,
    DROP CONSTRAINT activities_org_id_partner_id_fkey,
    DROP CONSTRAINT activities_source_email_fk;
ALTER TABLE ce_emails DROP CONSTRAINT ce_emails_org_id_account_id_fkey;
ALTER TABLE ce_email_links
    DROP CONSTRAINT ce_email_links_org_id_email_id_fkey,
    DROP CONSTRAINT ce_email_links_org_id_contact_id_fkey,
    DROP CONSTRAINT ce_email_links_org_id_partner_id_fkey;
ALTER TABLE ce_email_attachments
    DROP CONSTRAINT ce_email_attachments_org_id_email_id_fkey,
    DROP CONSTRAINT ce_email_attachments_org_id_document_id_fkey;
ALTER TABLE ce_email_tracking_events
    DROP CONSTRAINT ce_email_tracking_events_org_id_email_id_fkey;
ALTER TABLE ce_email_participants DROP CONSTRAINT ce_email_participants_org_id_email_id_fkey;
ALTER TABLE ce_email_tracked_links DROP CONSTRAINT ce_email_tracked_links_org_id_email_id_fkey;
ALTER TABLE vault.secrets DROP CONSTRAINT secrets_org_id_account_id_fkey;

-- 2. Unique indexes.
ALTER TABLE vault.secrets DROP CONSTRAINT secrets_org_id_account_id_kind_key,
    ADD CONSTRAINT secrets_account_id_kind_key UNIQUE (account_id, kind);
ALTER TABLE ce_email_tracked_links
    DROP CONSTRAINT ce_email_tracked_links_org_id_email_id_position_key,
    ADD CONSTRAINT ce_email_tracked_links_email_id_position_key UNIQUE (email_id, position);
DROP INDEX activities_one_per_email_partner;
CREATE UNIQUE INDEX activities_one_per_email_partner ON activities (source_email_id, partner_id)
    WHERE source_email_id IS NOT NULL AND partner_id IS NOT NULL;
DROP INDEX activities_one_per_email_contact;
CREATE UNIQUE INDEX activities_one_per_email_contact ON activities (source_email_id, contact_id)
    WHERE source_email_id IS NOT NULL AND contact_id IS NOT NULL;
DROP INDEX ce_email_links_partner;
CREATE UNIQUE INDEX ce_email_links_partner ON ce_email_links (email_id, partner_id)
    WHERE partner_id IS NOT NULL;
DROP INDEX ce_email_links_contact;
CREATE UNIQUE INDEX ce_email_links_contact ON ce_email_links (email_id, contact_id)
    WHERE contact_id IS NOT NULL;
DROP INDEX ce_emails_provider_id;
CREATE UNIQUE INDEX ce_emails_provider_id ON ce_emails (account_id, provider_message_id)
    WHERE provider_message_id IS NOT NULL;

-- 3. Primary keys on id (or the natural key without org_id), UNIQUE (org_id, id) where
-- it stood.
ALTER TABLE ce_email_participants DROP CONSTRAINT ce_email_participants_pkey,
    ADD CONSTRAINT ce_email_participants_pkey PRIMARY KEY (email_id, kind, value);
ALTER TABLE partner_domains DROP CONSTRAINT partner_domains_pkey,
    ADD CONSTRAINT partner_domains_pkey PRIMARY KEY (partner_id, domain);
ALTER TABLE contact_emails DROP CONSTRAINT contact_emails_pkey,
    ADD CONSTRAINT contact_emails_pkey PRIMARY KEY (contact_id, email);
ALTER TABLE vault.secrets DROP CONSTRAINT secrets_pkey,
    ADD CONSTRAINT secrets_pkey PRIMARY KEY (id);
ALTER TABLE ce_oauth_states DROP CONSTRAINT ce_oauth_states_pkey,
    ADD CONSTRAINT ce_oauth_states_pkey PRIMARY KEY (id);
ALTER TABLE ce_email_tracked_links DROP CONSTRAINT ce_email_tracked_links_pkey,
    ADD CONSTRAINT ce_email_tracked_links_pkey PRIMARY KEY (id);
ALTER TABLE ce_email_tracking_events DROP CONSTRAINT ce_email_tracking_events_pkey,
    ADD CONSTRAINT ce_email_tracking_events_pkey PRIMARY KEY (id);
ALTER TABLE ce_email_links DROP CONSTRAINT ce_email_links_pkey,
    ADD CONSTRAINT ce_email_links_pkey PRIMARY KEY (id);
ALTER TABLE notifications DROP CONSTRAINT notifications_pkey,
    ADD CONSTRAINT notifications_pkey PRIMARY KEY (id);
ALTER TABLE activities DROP CONSTRAINT activities_pkey,
    ADD CONSTRAINT activities_pkey PRIMARY KEY (id);
ALTER TABLE ce_email_attachments DROP CONSTRAINT ce_email_attachments_pkey,
    ADD CONSTRAINT ce_email_attachments_pkey PRIMARY KEY (id),
    ADD CONSTRAINT ce_email_attachments_org_id_id_key UNIQUE (org_id, id);
ALTER TABLE ce_emails DROP CONSTRAINT ce_emails_pkey,
    ADD CONSTRAINT ce_emails_pkey PRIMARY KEY (id),
    ADD CONSTRAINT ce_emails_org_id_id_key UNIQUE (org_id, id);
ALTER TABLE ce_email_accounts DROP CONSTRAINT ce_email_accounts_pkey,
    ADD CONSTRAINT ce_email_accounts_pkey PRIMARY KEY (id),
    ADD CONSTRAINT ce_email_accounts_org_id_id_key UNIQUE (org_id, id);
ALTER TABLE documents DROP CONSTRAINT documents_pkey,
    ADD CONSTRAINT documents_pkey PRIMARY KEY (id),
    ADD CONSTRAINT documents_org_id_id_key UNIQUE (org_id, id);
ALTER TABLE partners DROP CONSTRAINT partners_pkey,
    ADD CONSTRAINT partners_pkey PRIMARY KEY (id),
    ADD CONSTRAINT partners_org_id_id_key UNIQUE (org_id, id);
ALTER TABLE contacts DROP CONSTRAINT contacts_pkey,
    ADD CONSTRAINT contacts_pkey PRIMARY KEY (id),
    ADD CONSTRAINT contacts_org_id_id_key UNIQUE (org_id, id);

-- 4. Foreign keys as revision 0009 had them (sql/003, sql/020, sql/040, sql/080).
ALTER TABLE contact_emails ADD CONSTRAINT contact_emails_org_id_contact_id_fkey
    FOREIGN KEY (org_id, contact_id) REFERENCES contacts (org_id, id) ON DELETE CASCADE;
ALTER TABLE partner_domains ADD CONSTRAINT partner_domains_org_id_partner_id_fkey
    FOREIGN KEY (org_id, partner_id) REFERENCES partners (org_id, id) ON DELETE CASCADE;
ALTER TABLE ce_emails ADD CONSTRAINT ce_emails_org_id_account_id_fkey
    FOREIGN KEY (org_id, account_id) REFERENCES ce_email_accounts (org_id, id) ON DELETE CASCADE;
ALTER TABLE activities
    ADD CONSTRAINT activities_contact_id_fkey
        FOREIGN KEY (contact_id) REFERENCES contacts (id) ON DELETE CASCADE,
    ADD CONSTRAINT activities_partner_id_fkey
        FOREIGN KEY (partner_id) REFERENCES partners (id) ON DELETE CASCADE,
    ADD CONSTRAINT activities_source_email_fk
        FOREIGN KEY (source_email_id) REFERENCES ce_emails (id) ON DELETE CASCADE;
ALTER TABLE ce_email_links
    ADD CONSTRAINT ce_email_links_org_id_email_id_fkey
        FOREIGN KEY (org_id, email_id) REFERENCES ce_emails (org_id, id) ON DELETE CASCADE,
    ADD CONSTRAINT ce_email_links_org_id_contact_id_fkey
        FOREIGN KEY (org_id, contact_id) REFERENCES contacts (org_id, id) ON DELETE CASCADE,
    ADD CONSTRAINT ce_email_links_org_id_partner_id_fkey
        FOREIGN KEY (org_id, partner_id) REFERENCES partners (org_id, id) ON DELETE CASCADE;
ALTER TABLE ce_email_attachments
    ADD CONSTRAINT ce_email_attachments_org_id_email_id_fkey
        FOREIGN KEY (org_id, email_id) REFERENCES ce_emails (org_id, id) ON DELETE CASCADE,
    ADD CONSTRAINT ce_email_attachments_org_id_document_id_fkey
        FOREIGN KEY (org_id, document_id) REFERENCES documents (org_id, id)
        ON DELETE SET NULL (document_id);
ALTER TABLE ce_email_tracking_events ADD CONSTRAINT ce_email_tracking_events_email_id_fkey
    FOREIGN KEY (email_id) REFERENCES ce_emails (id) ON DELETE CASCADE;
ALTER TABLE ce_email_participants ADD CONSTRAINT ce_email_participants_email_id_fkey
    FOREIGN KEY (email_id) REFERENCES ce_emails (id) ON DELETE CASCADE;
ALTER TABLE ce_email_tracked_links ADD CONSTRAINT ce_email_tracked_links_org_id_email_id_fkey
    FOREIGN KEY (org_id, email_id) REFERENCES ce_emails (org_id, id) ON DELETE CASCADE;
ALTER TABLE vault.secrets ADD CONSTRAINT secrets_org_id_account_id_fkey
    FOREIGN KEY (org_id, account_id) REFERENCES ce_email_accounts (org_id, id) ON DELETE CASCADE;

-- 5. The functions as sql/004 and sql/070 made them.
CREATE OR REPLACE FUNCTION vault.put_secret(p_account_id uuid, p_kind text, p_key_id text,
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

CREATE OR REPLACE FUNCTION ce_known_provider_ids(p_account_id uuid, p_provider_ids text[])
RETURNS SETOF text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT known.provider_message_id
    FROM unnest(p_provider_ids) AS listed(provider_message_id)
    CROSS JOIN LATERAL (
        SELECT e.provider_message_id FROM public.ce_emails e
        WHERE e.account_id = p_account_id
          AND e.provider_message_id = listed.provider_message_id
        LIMIT 1
    ) AS known
    WHERE EXISTS (
        SELECT 1 FROM public.ce_email_accounts a
        WHERE a.id = p_account_id
          AND a.org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
    )
$$;
