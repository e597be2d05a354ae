-- CE-07's own tables. Composite (org_id, id) foreign keys make a cross-org reference
-- impossible even for code that forgets which org it is in.

CREATE TABLE ce_email_accounts (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id             uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    owner_user_id      uuid NOT NULL REFERENCES users (id),
    provider           text NOT NULL CHECK (provider IN ('gmail', 'outlook')),
    email_address      text NOT NULL,
    display_name       text,
    status             text NOT NULL DEFAULT 'active'
                       CHECK (status IN ('active', 'syncing', 'reauth_required', 'error',
                                         'disconnected')),
    status_reason      text,
    visibility         text NOT NULL DEFAULT 'org' CHECK (visibility IN ('org', 'private')),
    -- provider cursors: gmail {"history_id"}, outlook {"inbox": deltaLink, "sent": deltaLink}
    sync_cursor        jsonb NOT NULL DEFAULT '{}'::jsonb,
    push_channel_id    text,
    push_expires_at    timestamptz,
    push_resource      text,
    token_expires_at   timestamptz,
    scopes             text,
    access_secret_id   uuid,
    refresh_secret_id  uuid,
    last_synced_at     timestamptz,
    last_error         text,
    last_error_at      timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, id),
    -- one account per mailbox and org: reconnecting the same mailbox reuses it
    UNIQUE (org_id, provider, email_address)
);

CREATE TABLE ce_emails (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id               uuid NOT NULL,
    account_id           uuid NOT NULL,
    provider_message_id  text,
    provider_thread_id   text,
    internet_message_id  text,
    in_reply_to          text,
    direction            text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    status               text NOT NULL
                         CHECK (status IN ('queued', 'sent', 'failed', 'bounced', 'received')),
    folder               text,
    subject              text,
    snippet              text,
    from_address         text,
    from_name            text,
    to_recipients        jsonb NOT NULL DEFAULT '[]'::jsonb,
    cc_recipients        jsonb NOT NULL DEFAULT '[]'::jsonb,
    bcc_recipients       jsonb NOT NULL DEFAULT '[]'::jsonb,
    text_body            text,
    html_body            text,
    body_truncated       boolean NOT NULL DEFAULT false,
    has_attachments      boolean NOT NULL DEFAULT false,
    content_hash         text,
    sent_at              timestamptz,
    received_at          timestamptz,
    -- the timeline's order: sent_at for outbound, received_at for inbound
    occurred_at          timestamptz NOT NULL DEFAULT now(),
    sent_by_user_id      uuid REFERENCES users (id) ON DELETE SET NULL,
    idempotency_key      text,
    send_error           text,
    open_count           integer NOT NULL DEFAULT 0,
    click_count          integer NOT NULL DEFAULT 0,
    first_opened_at      timestamptz,
    last_opened_at       timestamptz,
    bounced_at           timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, id),
    FOREIGN KEY (org_id, account_id) REFERENCES ce_email_accounts (org_id, id) ON DELETE CASCADE
);
-- Dedup: one row per (account, provider message id).
CREATE UNIQUE INDEX ce_emails_provider_id ON ce_emails (account_id, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
CREATE UNIQUE INDEX ce_emails_idempotency ON ce_emails (org_id, sent_by_user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX ce_emails_by_account ON ce_emails (org_id, account_id, occurred_at DESC, id DESC);
CREATE INDEX ce_emails_by_org ON ce_emails (org_id, occurred_at DESC, id DESC);
CREATE INDEX ce_emails_by_internet_id ON ce_emails (org_id, internet_message_id)
    WHERE internet_message_id IS NOT NULL;

-- An email links to every contact and every partner it matched: one row per link.
-- occurred_at is copied from the email so a timeline is one index range scan.
CREATE TABLE ce_email_links (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id       uuid NOT NULL,
    email_id     uuid NOT NULL,
    contact_id   uuid,
    partner_id   uuid,
    occurred_at  timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((contact_id IS NULL) <> (partner_id IS NULL)),
    FOREIGN KEY (org_id, email_id) REFERENCES ce_emails (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, contact_id) REFERENCES contacts (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, partner_id) REFERENCES partners (org_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX ce_email_links_contact ON ce_email_links (email_id, contact_id)
    WHERE contact_id IS NOT NULL;
CREATE UNIQUE INDEX ce_email_links_partner ON ce_email_links (email_id, partner_id)
    WHERE partner_id IS NOT NULL;
CREATE INDEX ce_email_links_contact_timeline
    ON ce_email_links (org_id, contact_id, occurred_at DESC, email_id DESC)
    WHERE contact_id IS NOT NULL;
CREATE INDEX ce_email_links_partner_timeline
    ON ce_email_links (org_id, partner_id, occurred_at DESC, email_id DESC)
    WHERE partner_id IS NOT NULL;

CREATE TABLE ce_email_attachments (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id                  uuid NOT NULL,
    email_id                uuid NOT NULL,
    provider_attachment_id  text,
    filename                text,
    content_type            text NOT NULL DEFAULT 'application/octet-stream',
    size                    bigint NOT NULL DEFAULT 0,
    content_id              text,
    is_inline               boolean NOT NULL DEFAULT false,
    part_index              integer,
    document_id             uuid,
    created_at              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, id),
    FOREIGN KEY (org_id, email_id) REFERENCES ce_emails (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, document_id) REFERENCES documents (org_id, id) ON DELETE SET NULL (document_id)
);
CREATE INDEX ce_email_attachments_by_email ON ce_email_attachments (email_id);

CREATE TABLE ce_email_tracking_events (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id          uuid NOT NULL,
    email_id        uuid NOT NULL,
    type            text NOT NULL CHECK (type IN ('opened', 'clicked', 'bounced')),
    classification  text CHECK (classification IN ('human', 'machine')),
    link_url        text,
    recipient       text,
    detail          jsonb NOT NULL DEFAULT '{}'::jsonb,
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (org_id, email_id) REFERENCES ce_emails (org_id, id) ON DELETE CASCADE
);
CREATE INDEX ce_email_tracking_events_by_email
    ON ce_email_tracking_events (org_id, email_id, occurred_at DESC);

-- Per-org module settings; a NULL column means "unset": the service applies the default.
-- The CHECKs repeat the API's validation so no path can store an out-of-range value.
CREATE TABLE ce_module_settings (
    org_id                        uuid PRIMARY KEY REFERENCES organisations (id) ON DELETE CASCADE,
    email_sync_history_days       integer CHECK (email_sync_history_days BETWEEN 7 AND 90),
    email_body_size_limit_kb      integer CHECK (email_body_size_limit_kb BETWEEN 100 AND 2000),
    email_sync_interval_minutes   integer CHECK (email_sync_interval_minutes BETWEEN 5 AND 60),
    email_tracking_enabled        boolean,
    email_custom_tracking_domain  text,
    updated_at                    timestamptz NOT NULL DEFAULT now(),
    updated_by                    uuid REFERENCES users (id) ON DELETE SET NULL
);

ALTER TABLE activities
    ADD CONSTRAINT activities_source_email_fk
    FOREIGN KEY (source_email_id) REFERENCES ce_emails (id) ON DELETE CASCADE;
-- One activity per (email, contact) link and per (email, partner) link, enforced.
CREATE UNIQUE INDEX activities_one_per_email_contact ON activities (source_email_id, contact_id)
    WHERE source_email_id IS NOT NULL AND contact_id IS NOT NULL;
CREATE UNIQUE INDEX activities_one_per_email_partner ON activities (source_email_id, partner_id)
    WHERE source_email_id IS NOT NULL AND partner_id IS NOT NULL;
