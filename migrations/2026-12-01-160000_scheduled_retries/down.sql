DROP INDEX IF EXISTS public.idx_job_executions_retry_at;
ALTER TABLE public.job_executions DROP COLUMN IF EXISTS retry_at;
