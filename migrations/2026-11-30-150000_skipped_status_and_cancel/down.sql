ALTER TABLE public.job_executions
  DROP COLUMN IF EXISTS cancel_requested_by,
  DROP COLUMN IF EXISTS cancel_requested_at;

UPDATE public.job_executions SET status = 'failed' WHERE status = 'skipped';

ALTER TABLE public.job_executions DROP CONSTRAINT IF EXISTS job_executions_status_check;
ALTER TABLE public.job_executions
  ADD CONSTRAINT job_executions_status_check
  CHECK (status IN ('running', 'success', 'failed'));
