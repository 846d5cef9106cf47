ALTER TABLE public.job_executions DROP COLUMN IF EXISTS requested_by;
