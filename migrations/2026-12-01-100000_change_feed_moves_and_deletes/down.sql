DROP TRIGGER IF EXISTS job_executions_deleted_notify ON public.job_executions;
DROP TRIGGER IF EXISTS job_executions_moved_notify ON public.job_executions;
DROP FUNCTION IF EXISTS public.job_executions_left_notify();
