-- When a failed scheduled attempt is due to be tried again. The server that ran it waits
-- and claims the next attempt itself; if it stops or dies while waiting, another server
-- finds the retry overdue here and claims it instead (once, by the slot's unique claim).
ALTER TABLE public.job_executions ADD COLUMN IF NOT EXISTS retry_at TIMESTAMPTZ NULL;

-- The overdue retries of the last hours: small, and read by every server's lease check.
CREATE INDEX IF NOT EXISTS idx_job_executions_retry_at
  ON public.job_executions (retry_at)
  WHERE retry_at IS NOT NULL;
