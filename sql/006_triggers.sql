-- CE-04 activity trigger. One activity per link: an email linked to a contact and to a
-- partner shows once in each timeline. Linking inserts the activity (ON CONFLICT: a
-- repeated or concurrent link never makes a second one, the unique indexes on activities
-- decide); unlinking removes that link's activity; deleting the email removes all of its
-- activities (activities.source_email_id cascades) — the email left the mailbox, so the
-- activity it stood for goes too, consistently with the timeline.
-- The function runs as the invoking role, so RLS applies to the activity it writes.

CREATE FUNCTION ce_email_links_fill() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.occurred_at IS NULL THEN
        SELECT e.occurred_at INTO NEW.occurred_at FROM ce_emails e WHERE e.id = NEW.email_id;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER ce_email_links_fill BEFORE INSERT ON ce_email_links
    FOR EACH ROW EXECUTE FUNCTION ce_email_links_fill();

CREATE FUNCTION ce_email_links_record_activity() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO activities (org_id, type, direction, subject, occurred_at,
                            contact_id, partner_id, source_email_id)
    SELECT e.org_id, 'email', e.direction, e.subject, e.occurred_at,
           NEW.contact_id, NEW.partner_id, e.id
    FROM ce_emails e
    WHERE e.id = NEW.email_id
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER ce_email_links_record_activity AFTER INSERT ON ce_email_links
    FOR EACH ROW EXECUTE FUNCTION ce_email_links_record_activity();

CREATE FUNCTION ce_email_links_remove_activity() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM activities a
    WHERE a.source_email_id = OLD.email_id
      AND a.contact_id IS NOT DISTINCT FROM OLD.contact_id
      AND a.partner_id IS NOT DISTINCT FROM OLD.partner_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER ce_email_links_remove_activity AFTER DELETE ON ce_email_links
    FOR EACH ROW EXECUTE FUNCTION ce_email_links_remove_activity();

-- Keep the activity's subject and time in step when the email row is corrected later
-- (a queued send that becomes sent gets its real sent time).
CREATE FUNCTION ce_emails_sync_activity() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE activities a
    SET subject = NEW.subject, occurred_at = NEW.occurred_at, direction = NEW.direction
    WHERE a.source_email_id = NEW.id;
    UPDATE ce_email_links l SET occurred_at = NEW.occurred_at WHERE l.email_id = NEW.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER ce_emails_sync_activity AFTER UPDATE OF subject, occurred_at, direction
    ON ce_emails FOR EACH ROW
    WHEN (OLD.subject IS DISTINCT FROM NEW.subject
          OR OLD.occurred_at IS DISTINCT FROM NEW.occurred_at
          OR OLD.direction IS DISTINCT FROM NEW.direction)
    EXECUTE FUNCTION ce_emails_sync_activity();
