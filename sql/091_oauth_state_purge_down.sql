DROP FUNCTION IF EXISTS ce_orgs_with_expired_oauth_states(integer);
DROP POLICY IF EXISTS directory_lookup ON ce_oauth_states;
REVOKE ALL ON ce_oauth_states FROM ce_directory;
