-- Downgrade of the foundation: everything but the roles (cluster-wide, possibly shared by
-- other databases of this server), whose grants in this database go with the objects.
DROP SCHEMA IF EXISTS vault CASCADE;
DROP TABLE IF EXISTS
    ce_email_tracking_events, ce_email_attachments, ce_email_links, ce_module_settings,
    activities, ce_emails, ce_email_accounts, notifications, documents,
    partner_domains, partners, contact_emails, contacts, org_memberships, users, organisations
CASCADE;
DROP FUNCTION IF EXISTS ce_email_links_fill(), ce_email_links_record_activity(),
    ce_email_links_remove_activity(), ce_emails_sync_activity();
REVOKE ALL ON SCHEMA public FROM ce_app, ce_vault;
