-- Drops the table and its history. Reverting is for development databases: on an
-- adopted production database, never revert this migration (see migrations/README.md).
DROP TABLE IF EXISTS public.job_executions;
