DROP TABLE IF EXISTS public.job_workers;
DROP TABLE IF EXISTS public.job_execution_events;
DROP TRIGGER IF EXISTS job_controls_notify ON public.job_controls;
DROP FUNCTION IF EXISTS public.job_controls_notify();
DROP TABLE IF EXISTS public.job_controls;
