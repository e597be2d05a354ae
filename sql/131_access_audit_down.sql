DROP FUNCTION IF EXISTS ce_orgs_with_email_audit(boolean, integer);
DROP FUNCTION IF EXISTS ce_email_audit_purge_expired();
DROP FUNCTION IF EXISTS ce_email_audit_mark_sealed(bigint, uuid[]);
ALTER TABLE ce_module_settings DROP COLUMN IF EXISTS email_audit_retention_days;
DROP TABLE IF EXISTS ce_email_access_audit_emails;
DROP TABLE IF EXISTS ce_email_access_audit;
DROP TABLE IF EXISTS ce_email_audit_blocks;
