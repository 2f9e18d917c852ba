-- A password reset revokes the user's access tokens: every token carries the version it was
-- issued under ("ver" claim), a reset moves the version on, and a token of an older version
-- is refused (services/api/auth/dependencies.py; on the accept path by its own statement).
ALTER TABLE users ADD COLUMN token_version integer NOT NULL DEFAULT 0;
