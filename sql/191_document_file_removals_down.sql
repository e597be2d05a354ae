DROP FUNCTION ce_orgs_with_file_removals(integer);
DROP TRIGGER ce_documents_queue_file_removal ON documents;
DROP FUNCTION ce_documents_queue_file_removal();
DROP TABLE ce_document_file_removals;
