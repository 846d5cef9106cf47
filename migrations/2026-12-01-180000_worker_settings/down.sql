ALTER TABLE public.job_workers DROP COLUMN IF EXISTS settings;
