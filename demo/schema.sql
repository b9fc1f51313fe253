-- The demo schema: a small SaaS app's tables with the secrets pgcmek encrypts
-- (config.yaml's `encrypted` section names these columns). Safe to run twice.
--
-- Columns that pgcmek encrypts are `text` (or `jsonb` for json_paths): an
-- encrypted value is longer than the secret it holds, so a varchar(n) limit
-- sized for the plaintext would reject it.

CREATE TABLE IF NOT EXISTS workspace (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name        text NOT NULL,
  plan        text NOT NULL DEFAULT 'free',
  -- Encrypted inside: the value at settings->'smtp'->'password' only.
  settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS integrations_integrationconnection (
  id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  workspace_id       bigint NOT NULL REFERENCES workspace (id) ON DELETE CASCADE,
  provider           text NOT NULL,
  enabled            boolean NOT NULL DEFAULT true,
  -- Encrypted: one token column per provider (most are NULL in any row).
  slack_token        text,
  jira_token         text,
  linear_key         text,
  git_token          text,
  pagerduty_key      text,
  twilio_auth_token  text,
  created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS webhook (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  workspace_id  bigint NOT NULL REFERENCES workspace (id) ON DELETE CASCADE,
  url           text NOT NULL,
  -- Encrypted: the HMAC signing secret.
  secret        text NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS user_profile (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  workspace_id  bigint NOT NULL REFERENCES workspace (id) ON DELETE CASCADE,
  email         text NOT NULL UNIQUE,
  display_name  text,
  -- Encrypted: the TOTP seed and the one-time backup codes (one text value).
  totp_secret   text,
  backup_codes  text,
  created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS api_token (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id       bigint NOT NULL REFERENCES user_profile (id) ON DELETE CASCADE,
  name          text NOT NULL,
  -- Encrypted, searchable: the app looks tokens up with `WHERE token_hash = $1`.
  token_hash    text NOT NULL UNIQUE,
  created_at    timestamptz NOT NULL DEFAULT now(),
  last_used_at  timestamptz
);
