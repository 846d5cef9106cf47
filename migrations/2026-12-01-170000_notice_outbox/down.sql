DROP TABLE IF EXISTS public.job_notices;
