-- Notices decided and not yet delivered. A notice is written in the same statement as the
-- state change that earned it, by the one server whose change won, and deleted once every
-- channel took it. A notice whose sender stopped or died, or whose channels kept failing,
-- is sent again by any server once its claim is old: nothing decided is lost to a restart
-- or a short mail outage. Copies of one e-mail share its Message-ID.
CREATE TABLE IF NOT EXISTS public.job_notices (
  id BIGSERIAL PRIMARY KEY,
  job_name VARCHAR(100) NOT NULL,
  kind VARCHAR(40) NOT NULL,
  subject TEXT NOT NULL,
  plain_text TEXT NOT NULL,
  html TEXT NOT NULL,
  webhook_body JSONB NOT NULL,
  message_id TEXT NOT NULL,
  email_pending BOOLEAN NOT NULL,
  webhook_pending BOOLEAN NOT NULL,
  tries INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  claimed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
