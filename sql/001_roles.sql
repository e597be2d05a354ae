-- Roles. ce_app is what the service logs in as at run time: no superuser, no BYPASSRLS,
-- owns nothing, so row-level security always applies to it. ce_vault owns the vault and
-- its SECURITY DEFINER functions; it cannot log in and is not exempt from RLS either, so
-- even the vault functions only ever see the current org's secrets.
-- Roles are cluster-wide (shared by every database), so they are created once and never
-- dropped by a downgrade; only this database's grants are.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ce_app') THEN
        CREATE ROLE ce_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ce_vault') THEN
        CREATE ROLE ce_vault NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;
ALTER ROLE ce_app NOSUPERUSER NOBYPASSRLS;
ALTER ROLE ce_vault NOSUPERUSER NOBYPASSRLS;
