-- Serves "latest execution of a job" and per-job history pages, ordered by
-- (started_at DESC, id DESC), straight from the index. Without it the planner may walk
-- idx_job_executions_started_at across every job's rows to find one job's latest
-- (137 ms instead of 0.25 ms with 1 000 000 rows; see BENCHMARKS.md).
CREATE INDEX IF NOT EXISTS idx_job_executions_job_name_started_at_id
  ON public.job_executions (job_name, started_at DESC, id DESC);
