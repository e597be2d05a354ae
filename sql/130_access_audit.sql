-- The access audit (DESIGN §8): one append-only row per API read of email content, sealed
-- into blocks chained by SHA-256 so a change made with database access is detectable.
--
-- Who may do what:
--   ce_app        INSERT and SELECT on the audit rows (and their by-email side table),
--                 never UPDATE or DELETE (no grant);
--                 INSERT and SELECT on the blocks (sealing appends a block);
--                 EXECUTE on two SECURITY DEFINER functions owned by the tables' owner:
--                 ce_email_audit_mark_sealed (sets the block reference of rows that have
--                 none, for a block that exists) and ce_email_audit_purge_expired (deletes
--                 whole oldest sealed blocks past the org's retention, rows and all).
--   ce_directory  reads org ids only, to find the orgs with work for the sealing job.
-- Rows never reference ce_emails or users: audit rows outlive mail retention and people.

CREATE TABLE ce_email_audit_blocks (
    org_id            uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    seq               bigint NOT NULL CHECK (seq > 0),
    first_row_id      uuid NOT NULL,
    last_row_id       uuid NOT NULL,
    first_occurred_at timestamptz NOT NULL,
    last_occurred_at  timestamptz NOT NULL,
    row_count         integer NOT NULL CHECK (row_count > 0),
    prev_hash         text NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    hash              text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
    sealed_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, seq)
);

CREATE TABLE ce_email_access_audit (
    org_id        uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    user_id       uuid NOT NULL,
    action        text NOT NULL CHECK (action IN ('read', 'download', 'list')),
    email_ids     uuid[] NOT NULL CHECK (cardinality(email_ids) > 0),
    attachment_id uuid,
    occurred_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    request_id    text,
    block_seq     bigint,
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, block_seq) REFERENCES ce_email_audit_blocks (org_id, seq),
    CHECK (action = 'list' OR cardinality(email_ids) = 1),
    CHECK ((attachment_id IS NOT NULL) = (action = 'download'))
);

-- Newest first, keyset on (occurred_at, id): the org's list and one user's.
CREATE INDEX ce_email_access_audit_time ON ce_email_access_audit (org_id, occurred_at, id);
CREATE INDEX ce_email_access_audit_user
    ON ce_email_access_audit (org_id, user_id, occurred_at, id);
-- Rows of one block (sealing, verification, retention).
CREATE INDEX ce_email_access_audit_block ON ce_email_access_audit (org_id, block_seq)
    WHERE block_seq IS NOT NULL;
-- Rows still to seal: few at any time.
CREATE INDEX ce_email_access_audit_unsealed ON ce_email_access_audit (org_id)
    WHERE block_seq IS NULL;

-- Which audit rows name an email ("who read this email"): under RLS only leakproof
-- operators become index conditions, so array containment on email_ids could never use an
-- index; a btree on this side table can. Written by the same statement as the audit row;
-- a lookup aid only (the chain covers the audit rows themselves).
CREATE TABLE ce_email_access_audit_emails (
    org_id      uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    email_id    uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    audit_id    uuid NOT NULL,
    PRIMARY KEY (org_id, email_id, occurred_at, audit_id)
);

DO $$
DECLARE
    t text;
    org_expr constant text := 'NULLIF(current_setting(''app.org_id'', true), '''')::uuid';
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'ce_email_access_audit', 'ce_email_access_audit_emails', 'ce_email_audit_blocks'
    ] LOOP
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY org_select ON %s FOR SELECT USING (org_id = %s)',
                       t, org_expr);
        EXECUTE format('CREATE POLICY org_insert ON %s FOR INSERT WITH CHECK (org_id = %s)',
                       t, org_expr);
        -- UPDATE and DELETE policies exist (every command is scoped to the org) but ce_app
        -- holds no UPDATE or DELETE grant on either table: append-only for the service.
        EXECUTE format('CREATE POLICY org_update ON %s FOR UPDATE USING (org_id = %s) '
                       'WITH CHECK (org_id = %s)', t, org_expr, org_expr);
        EXECUTE format('CREATE POLICY org_delete ON %s FOR DELETE USING (org_id = %s)',
                       t, org_expr);
    END LOOP;
END
$$;

GRANT SELECT, INSERT ON ce_email_access_audit, ce_email_access_audit_emails,
    ce_email_audit_blocks TO ce_app;

-- The audit retention (DESIGN §4), an org setting like the others.
ALTER TABLE ce_module_settings
    ADD COLUMN email_audit_retention_days integer
        CHECK (email_audit_retention_days BETWEEN 2190 AND 3650);

-- Sealing marks the rows of a new block. The function runs as the tables' owner, touches
-- only the current org's rows that have no block yet, and only for a block the caller has
-- just appended with exactly that many rows; anything else raises and rolls back.
CREATE FUNCTION ce_email_audit_mark_sealed(p_seq bigint, p_ids uuid[])
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    v_org uuid := NULLIF(current_setting('app.org_id', true), '')::uuid;
    v_expected integer;
    v_marked integer;
BEGIN
    IF v_org IS NULL THEN
        RAISE EXCEPTION 'no org context';
    END IF;
    SELECT b.row_count INTO v_expected FROM public.ce_email_audit_blocks b
    WHERE b.org_id = v_org AND b.seq = p_seq;
    IF v_expected IS NULL OR v_expected <> cardinality(p_ids) THEN
        RAISE EXCEPTION 'block % does not match the rows to seal', p_seq;
    END IF;
    UPDATE public.ce_email_access_audit a SET block_seq = p_seq
    WHERE a.org_id = v_org AND a.id = ANY (p_ids) AND a.block_seq IS NULL;
    GET DIAGNOSTICS v_marked = ROW_COUNT;
    IF v_marked <> v_expected THEN
        RAISE EXCEPTION 'block %: % of % rows could be sealed', p_seq, v_marked, v_expected;
    END IF;
    RETURN v_marked;
END
$$;

-- Retention: whole blocks, oldest first, whose every row is older than the org's
-- email_audit_retention_days (default 2190), are deleted with their rows. Unsealed rows
-- are never deleted, and the newest block always stays so the chain continues from it;
-- verification starts at the oldest remaining block.
CREATE FUNCTION ce_email_audit_purge_expired()
RETURNS TABLE (blocks integer, audit_rows integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    v_org uuid := NULLIF(current_setting('app.org_id', true), '')::uuid;
    v_days integer;
    v_cutoff timestamptz;
    v_last_seq bigint;
    v_keep_from bigint;
BEGIN
    IF v_org IS NULL THEN
        RAISE EXCEPTION 'no org context';
    END IF;
    SELECT s.email_audit_retention_days INTO v_days
    FROM public.ce_module_settings s WHERE s.org_id = v_org;
    v_cutoff := now() - make_interval(days => COALESCE(v_days, 2190));
    SELECT max(b.seq) INTO v_last_seq FROM public.ce_email_audit_blocks b
    WHERE b.org_id = v_org;
    IF v_last_seq IS NULL THEN
        blocks := 0; audit_rows := 0;
        RETURN NEXT;
        RETURN;
    END IF;
    -- the first block holding a row inside the window (or the newest block) and every
    -- later one stay: the deleted blocks are a prefix of the chain
    SELECT COALESCE(min(b.seq), v_last_seq) INTO v_keep_from FROM public.ce_email_audit_blocks b
    WHERE b.org_id = v_org AND b.last_occurred_at >= v_cutoff;
    v_keep_from := LEAST(v_keep_from, v_last_seq);
    DELETE FROM public.ce_email_access_audit_emails x
    WHERE (x.org_id, x.email_id, x.occurred_at, x.audit_id) IN (
        SELECT a.org_id, e.email_id, a.occurred_at, a.id
        FROM public.ce_email_access_audit a, unnest(a.email_ids) AS e (email_id)
        WHERE a.org_id = v_org AND a.block_seq < v_keep_from);
    DELETE FROM public.ce_email_access_audit a
    WHERE a.org_id = v_org AND a.block_seq < v_keep_from;
    GET DIAGNOSTICS audit_rows = ROW_COUNT;
    DELETE FROM public.ce_email_audit_blocks b WHERE b.org_id = v_org AND b.seq < v_keep_from;
    GET DIAGNOSTICS blocks = ROW_COUNT;
    RETURN NEXT;
END
$$;

REVOKE ALL ON FUNCTION ce_email_audit_mark_sealed(bigint, uuid[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION ce_email_audit_purge_expired() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ce_email_audit_mark_sealed(bigint, uuid[]) TO ce_app;
GRANT EXECUTE ON FUNCTION ce_email_audit_purge_expired() TO ce_app;

-- The sealing job runs without an org first: which orgs have unsealed rows, or any audit
-- at all (for verification). Owned by ce_directory, which may read the org ids only.
GRANT SELECT (org_id, block_seq) ON ce_email_access_audit TO ce_directory;
GRANT SELECT (org_id) ON ce_email_audit_blocks TO ce_directory;
CREATE POLICY directory_lookup ON ce_email_access_audit FOR SELECT TO ce_directory
    USING (true);
CREATE POLICY directory_lookup ON ce_email_audit_blocks FOR SELECT TO ce_directory
    USING (true);

CREATE FUNCTION ce_orgs_with_email_audit(p_unsealed_only boolean, p_limit integer)
RETURNS TABLE (org_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT o.org_id FROM (
        SELECT DISTINCT a.org_id FROM public.ce_email_access_audit a WHERE a.block_seq IS NULL
        UNION
        SELECT DISTINCT b.org_id FROM public.ce_email_audit_blocks b WHERE NOT p_unsealed_only
    ) o
    ORDER BY o.org_id
    LIMIT p_limit
$$;

ALTER FUNCTION ce_orgs_with_email_audit(boolean, integer) OWNER TO ce_directory;
REVOKE ALL ON FUNCTION ce_orgs_with_email_audit(boolean, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ce_orgs_with_email_audit(boolean, integer) TO ce_app;
