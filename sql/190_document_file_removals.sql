-- Files of deleted PF-11 documents leave the store for sure (issue 11, item 5: purged mail
-- is gone from the document store too).
--
-- A purge deletes document rows in its transaction and their files after the commit. A
-- process that died in between, or a file the store refused to delete, used to leave the
-- bytes (patients' attachments) behind with nothing pointing at them. Now deleting a
-- document row queues its file here in the same transaction (a trigger, so every path that
-- deletes documents is covered); the file is removed after the commit and its queue row
-- then deleted; what is left (a crash, a failure) is retried by a periodic job.
--
-- No foreign key to organisations: deleting an org cascades to its documents, and their
-- files must still be removed after the org is gone.
CREATE TABLE ce_document_file_removals (
    org_id          uuid NOT NULL,
    storage_key     text NOT NULL,
    queued_at       timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    last_attempt_at timestamptz,
    PRIMARY KEY (org_id, storage_key)
);
CREATE INDEX ce_document_file_removals_by_time
    ON ce_document_file_removals (org_id, queued_at);
ALTER TABLE ce_document_file_removals ENABLE ROW LEVEL SECURITY;
ALTER TABLE ce_document_file_removals FORCE ROW LEVEL SECURITY;
CREATE POLICY org_select ON ce_document_file_removals FOR SELECT
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY org_insert ON ce_document_file_removals FOR INSERT
    WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY org_update ON ce_document_file_removals FOR UPDATE
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY org_delete ON ce_document_file_removals FOR DELETE
    USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON ce_document_file_removals TO ce_app;

-- Runs as the deleting role, under its org's policies (a document row names its org).
CREATE FUNCTION ce_documents_queue_file_removal() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ce_document_file_removals (org_id, storage_key)
    SELECT d.org_id, d.storage_key FROM deleted_documents d
    WHERE d.storage_key IS NOT NULL
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER ce_documents_queue_file_removal
    AFTER DELETE ON documents REFERENCING OLD TABLE AS deleted_documents
    FOR EACH STATEMENT EXECUTE FUNCTION ce_documents_queue_file_removal();

-- The orgs with files waiting, for the periodic job (RLS shows a job no org's rows before
-- it knows the org): ids only.
GRANT SELECT (org_id) ON ce_document_file_removals TO ce_directory;
CREATE POLICY directory_lookup ON ce_document_file_removals FOR SELECT TO ce_directory
    USING (true);
CREATE FUNCTION ce_orgs_with_file_removals(p_limit integer)
RETURNS TABLE (org_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT DISTINCT r.org_id FROM public.ce_document_file_removals r
    ORDER BY r.org_id
    LIMIT p_limit
$$;
ALTER FUNCTION ce_orgs_with_file_removals(integer) OWNER TO ce_directory;
REVOKE ALL ON FUNCTION ce_orgs_with_file_removals(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ce_orgs_with_file_removals(integer) TO ce_app;
