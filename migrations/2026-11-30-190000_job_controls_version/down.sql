ALTER TABLE public.job_controls DROP COLUMN IF EXISTS version;
