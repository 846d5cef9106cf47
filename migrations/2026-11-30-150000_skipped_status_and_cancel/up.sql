-- A cron slot that was not run (the previous run still went, or it was missed) gets its
-- own status instead of posing as a failed run. The table may be one adopted from the old
-- system, whose CHECK on status has the same default name: drop whichever exists, then
-- add the wider one.
ALTER TABLE public.job_executions DROP CONSTRAINT IF EXISTS job_executions_status_check;
ALTER TABLE public.job_executions
  ADD CONSTRAINT job_executions_status_check
  CHECK (status IN ('running', 'success', 'failed', 'skipped'));

-- Rows recorded by earlier versions as failed with a "skipped:" message are skipped slots.
UPDATE public.job_executions
SET status = 'skipped'
WHERE status = 'failed' AND error_message LIKE 'skipped:%';

-- An operator's request to cancel a running execution, read by the server that runs it at
-- its next heartbeat (whichever server received the request).
ALTER TABLE public.job_executions
  ADD COLUMN IF NOT EXISTS cancel_requested_at TIMESTAMPTZ NULL,
  ADD COLUMN IF NOT EXISTS cancel_requested_by VARCHAR(100) NULL;
