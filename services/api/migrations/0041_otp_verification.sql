-- One-time codes are verified (POST /auth/otp/verify): wrong tries are counted per code, and
-- a code is spent when it is used or out of tries. A right code verifies the account's
-- e-mail address, where the portal sends its decisions.
ALTER TABLE otp_codes ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN email_verified_at timestamptz;
