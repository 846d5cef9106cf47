-- A counter raised by every write of a job's switches. Servers keep them in memory and
-- learn of changes from their own writes, notifications and full re-reads, which may
-- arrive out of order: a row never replaces one with a higher version.
ALTER TABLE public.job_controls ADD COLUMN IF NOT EXISTS version BIGINT NOT NULL DEFAULT 1;
