DROP TRIGGER IF EXISTS job_executions_notify ON public.job_executions;
DROP FUNCTION IF EXISTS public.job_executions_notify();
