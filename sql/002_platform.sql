-- Development stand-ins for the platform tables this service refers to. In production they
-- belong to other modules (organisations and users: platform; contacts: CE-01; partners:
-- CE-02; activities: CE-04; notifications: PF-10; documents: PF-11). Minimal, but with
-- real keys and org_id, so foreign keys, RLS and the activity trigger are exercised for real.

CREATE TABLE organisations (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A user is a platform identity and may belong to several orgs, so it carries no org_id;
-- what a user may do in an org is its membership.
CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email         text NOT NULL UNIQUE,
    display_name  text,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE org_memberships (
    org_id      uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        text NOT NULL CHECK (role IN ('member', 'admin')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, user_id)
);

-- CE-01 contacts, with one or more email addresses (stored normalised: lower case, trimmed).
CREATE TABLE contacts (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id      uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    name        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, id)
);

CREATE TABLE contact_emails (
    org_id      uuid NOT NULL,
    contact_id  uuid NOT NULL,
    email       text NOT NULL CHECK (email = lower(btrim(email)) AND email LIKE '%_@_%'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (contact_id, email),
    FOREIGN KEY (org_id, contact_id) REFERENCES contacts (org_id, id) ON DELETE CASCADE
);
CREATE INDEX contact_emails_by_address ON contact_emails (org_id, email);

-- CE-02 partners, with one or more domains (normalised: lower case, no leading @ or dot).
CREATE TABLE partners (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id      uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    name        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, id)
);

CREATE TABLE partner_domains (
    org_id      uuid NOT NULL,
    partner_id  uuid NOT NULL,
    domain      text NOT NULL CHECK (domain = lower(btrim(domain)) AND domain NOT LIKE '@%'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner_id, domain),
    FOREIGN KEY (org_id, partner_id) REFERENCES partners (org_id, id) ON DELETE CASCADE
);
CREATE INDEX partner_domains_by_domain ON partner_domains (org_id, domain);

-- CE-04 activities. source_email_id gets its foreign key once ce_emails exists.
CREATE TABLE activities (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id           uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    type             text NOT NULL,
    direction        text,
    subject          text,
    occurred_at      timestamptz NOT NULL,
    contact_id       uuid REFERENCES contacts (id) ON DELETE CASCADE,
    partner_id       uuid REFERENCES partners (id) ON DELETE CASCADE,
    source_email_id  uuid,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX activities_by_contact ON activities (org_id, contact_id, occurred_at DESC);
CREATE INDEX activities_by_partner ON activities (org_id, partner_id, occurred_at DESC);

-- PF-10 notifications. dedupe_key makes "notify once" a constraint, not a hope.
CREATE TABLE notifications (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id      uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    type        text NOT NULL,
    data        jsonb NOT NULL DEFAULT '{}'::jsonb,
    dedupe_key  text,
    read_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX notifications_dedupe ON notifications (org_id, dedupe_key)
    WHERE dedupe_key IS NOT NULL;
CREATE INDEX notifications_by_user ON notifications (org_id, user_id, created_at DESC);

-- PF-11 documents: metadata here, bytes in the document storage (a local directory in dev).
CREATE TABLE documents (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id        uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    filename      text NOT NULL,
    content_type  text NOT NULL DEFAULT 'application/octet-stream',
    size          bigint NOT NULL CHECK (size >= 0),
    sha256        text NOT NULL,
    storage_key   text NOT NULL,
    created_by    uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, id)
);
