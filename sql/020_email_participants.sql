-- Who an email can be linked to, kept so that linking a contact or partner created after
-- the mail arrived (retroactive linking) is an index lookup, not a scan of every email's
-- JSON participants.
--   ce_emails.participant_addresses: the addresses that link (lower case, trimmed; when
--     the domain is not ASCII, both its Unicode and its IDNA form): inbound, the sender
--     and every recipient; outbound, every recipient; never the mailbox's own address.
--   ce_emails.participant_domains: every suffix of at least two labels of those addresses'
--     domains (a.b.hospital.org -> a.b.hospital.org, b.hospital.org, hospital.org). Which
--     of them a partner may claim (no public suffix, no free-mail domain) is decided in
--     the service, where the Public Suffix List is.
-- The service fills both at insert (IDNA-normalised); a trigger fills them for rows
-- written without them (the send path, other modules) and keeps them in step.
--
-- Why a side table and not a GIN index on the arrays: under row-level security the
-- planner only uses a qual as an index condition when its operator is LEAKPROOF, and the
-- array operators (&&, @>) are not, so a GIN index would never be used by ce_app. Btree
-- equality on text and uuid is leakproof: ce_email_participants holds one row per
-- (email, address) and (email, domain), indexed on (org_id, kind, value), maintained by
-- statement-level triggers from the arrays (one INSERT per statement, not per row).

ALTER TABLE ce_emails
    ADD COLUMN participant_addresses text[],
    ADD COLUMN participant_domains text[];

CREATE FUNCTION ce_email_domain_suffixes(addresses text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(DISTINCT array_to_string(d.labels[i:], '.')), '{}')
    FROM (SELECT string_to_array(substring(a FROM '@([^@]+)$'), '.') AS labels
          FROM unnest(addresses) AS a) AS d,
         generate_series(1, coalesce(cardinality(d.labels), 0) - 1) AS i
$$;

CREATE FUNCTION ce_email_link_addresses(
    direction text, own_address text, from_address text,
    to_recipients jsonb, cc_recipients jsonb, bcc_recipients jsonb
) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(DISTINCT p.address), '{}')
    FROM (
        SELECT lower(btrim(from_address)) AS address WHERE direction = 'inbound'
        UNION ALL
        SELECT lower(btrim(r.value ->> 'address'))
        FROM jsonb_array_elements(
                 CASE WHEN jsonb_typeof(to_recipients) = 'array' THEN to_recipients
                      ELSE '[]'::jsonb END
                 || CASE WHEN jsonb_typeof(cc_recipients) = 'array' THEN cc_recipients
                         ELSE '[]'::jsonb END
                 || CASE WHEN jsonb_typeof(bcc_recipients) = 'array' THEN bcc_recipients
                         ELSE '[]'::jsonb END) AS r
        WHERE jsonb_typeof(r.value) = 'object'
    ) AS p
    WHERE p.address LIKE '%_@_%'
      AND p.address IS DISTINCT FROM lower(btrim(own_address))
$$;

CREATE TABLE ce_email_participants (
    org_id    uuid NOT NULL,
    email_id  uuid NOT NULL,
    kind      text NOT NULL CHECK (kind IN ('address', 'domain')),
    value     text NOT NULL,
    PRIMARY KEY (email_id, kind, value),
    FOREIGN KEY (org_id, email_id) REFERENCES ce_emails (org_id, id) ON DELETE CASCADE
);
CREATE INDEX ce_email_participants_lookup ON ce_email_participants (org_id, kind, value);

-- Backfill what exists. RLS is forced on the email tables (even for their owner) and a
-- migration has no org: lift FORCE for the duration of this transaction only (the new
-- table gets RLS below, after its backfill).
ALTER TABLE ce_emails NO FORCE ROW LEVEL SECURITY;
ALTER TABLE ce_email_accounts NO FORCE ROW LEVEL SECURITY;
UPDATE ce_emails e
SET participant_addresses = ce_email_link_addresses(
        e.direction, a.email_address, e.from_address,
        e.to_recipients, e.cc_recipients, e.bcc_recipients)
FROM ce_email_accounts a
WHERE a.id = e.account_id;
UPDATE ce_emails
SET participant_domains = ce_email_domain_suffixes(participant_addresses);
INSERT INTO ce_email_participants (org_id, email_id, kind, value)
SELECT e.org_id, e.id, 'address', v FROM ce_emails e, unnest(e.participant_addresses) AS v
UNION
SELECT e.org_id, e.id, 'domain', v FROM ce_emails e, unnest(e.participant_domains) AS v;
ALTER TABLE ce_emails FORCE ROW LEVEL SECURITY;
ALTER TABLE ce_email_accounts FORCE ROW LEVEL SECURITY;

CREATE FUNCTION ce_emails_fill_participants() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    own text;
BEGIN
    -- Values the writer set itself are kept: on INSERT when given, on UPDATE when changed.
    IF (TG_OP = 'INSERT' AND NEW.participant_addresses IS NULL)
       OR (TG_OP = 'UPDATE'
           AND NEW.participant_addresses IS NOT DISTINCT FROM OLD.participant_addresses) THEN
        SELECT a.email_address INTO own FROM ce_email_accounts a WHERE a.id = NEW.account_id;
        NEW.participant_addresses := ce_email_link_addresses(
            NEW.direction, own, NEW.from_address,
            NEW.to_recipients, NEW.cc_recipients, NEW.bcc_recipients);
        IF TG_OP = 'UPDATE'
           AND NEW.participant_domains IS NOT DISTINCT FROM OLD.participant_domains THEN
            NEW.participant_domains := NULL;
        END IF;
    END IF;
    IF NEW.participant_domains IS NULL THEN
        NEW.participant_domains := ce_email_domain_suffixes(NEW.participant_addresses);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER ce_emails_fill_participants
    BEFORE INSERT OR UPDATE OF direction, from_address, to_recipients, cc_recipients,
                               bcc_recipients, participant_addresses, participant_domains
    ON ce_emails FOR EACH ROW EXECUTE FUNCTION ce_emails_fill_participants();

ALTER TABLE ce_emails
    ALTER COLUMN participant_addresses SET NOT NULL,
    ALTER COLUMN participant_domains SET NOT NULL;

-- The send-then-sync lookup: our own sends whose provider id is still unknown, by
-- Message-ID. Partial, so it stays tiny (and the planner's obvious choice even while the
-- statistics of a freshly filled table are stale).
CREATE INDEX ce_emails_unsynced_sends ON ce_emails (account_id, internet_message_id)
    WHERE provider_message_id IS NULL AND direction = 'outbound';

ALTER TABLE ce_email_participants ENABLE ROW LEVEL SECURITY;
ALTER TABLE ce_email_participants FORCE ROW LEVEL SECURITY;
CREATE POLICY org_select ON ce_email_participants FOR SELECT
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY org_insert ON ce_email_participants FOR INSERT
    WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY org_update ON ce_email_participants FOR UPDATE
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY org_delete ON ce_email_participants FOR DELETE
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON ce_email_participants TO ce_app;

-- Kept in step with the arrays. The functions run as the invoking role: RLS applies.
CREATE FUNCTION ce_emails_participants_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ce_email_participants (org_id, email_id, kind, value)
    SELECT n.org_id, n.id, 'address', v FROM new_rows n, unnest(n.participant_addresses) AS v
    UNION
    SELECT n.org_id, n.id, 'domain', v FROM new_rows n, unnest(n.participant_domains) AS v
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER ce_emails_participants_inserted AFTER INSERT ON ce_emails
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ce_emails_participants_inserted();

-- Participants rarely change (our own send completed by its synced copy, recipients
-- edited): a row trigger whose WHEN lets it fire only then, so the frequent updates
-- (tracking counters, status) cost a comparison. No column list: it would miss changes
-- made by the BEFORE trigger above.
CREATE FUNCTION ce_emails_participants_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM ce_email_participants p
    WHERE p.email_id = NEW.id
      AND NOT (CASE p.kind WHEN 'address' THEN p.value = ANY(NEW.participant_addresses)
                           ELSE p.value = ANY(NEW.participant_domains) END);
    INSERT INTO ce_email_participants (org_id, email_id, kind, value)
    SELECT NEW.org_id, NEW.id, 'address', v FROM unnest(NEW.participant_addresses) AS v
    UNION
    SELECT NEW.org_id, NEW.id, 'domain', v FROM unnest(NEW.participant_domains) AS v
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER ce_emails_participants_updated
    AFTER UPDATE ON ce_emails
    FOR EACH ROW
    WHEN (OLD.participant_addresses IS DISTINCT FROM NEW.participant_addresses
          OR OLD.participant_domains IS DISTINCT FROM NEW.participant_domains)
    EXECUTE FUNCTION ce_emails_participants_updated();
