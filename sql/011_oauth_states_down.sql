DROP TABLE IF EXISTS ce_oauth_states;
