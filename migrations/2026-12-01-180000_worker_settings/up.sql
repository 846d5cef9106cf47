-- What each live server schedules (per job: cron, time zone, enabled, attempts, timeout), as
-- it wrote it with its heartbeat: replicas should share one configuration, and one that
-- does not is named in the log and in GET /internal/api/v1/workers.
ALTER TABLE public.job_workers ADD COLUMN IF NOT EXISTS settings JSONB NULL;
