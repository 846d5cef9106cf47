-- Who asked for a manual run: admin or local (HTTP, by role), cli (api-server run-job).
-- NULL for scheduled runs and for rows written before it was recorded (including the
-- old system's).
ALTER TABLE public.job_executions ADD COLUMN IF NOT EXISTS requested_by VARCHAR(20);
