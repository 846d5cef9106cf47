-- The change feed, for the job an execution leaves: when a row's job_name is changed by
-- hand, or a row is deleted (by hand, or by the history pruning), the job it belonged to
-- is announced as a `job` notification, and each server re-reads that job's latest
-- execution. Without it the job kept showing the row as its latest until the next full
-- re-read (LIVE_RESYNC_SECS). Identical notifications of one transaction are delivered
-- once, so a pruning batch costs one per job.
CREATE OR REPLACE FUNCTION public.job_executions_left_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('job_events', json_build_object(
    'kind', 'job',
    'job_name', OLD.job_name)::text);
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS job_executions_moved_notify ON public.job_executions;
CREATE TRIGGER job_executions_moved_notify
  AFTER UPDATE OF job_name ON public.job_executions
  FOR EACH ROW WHEN (OLD.job_name IS DISTINCT FROM NEW.job_name)
  EXECUTE FUNCTION public.job_executions_left_notify();

DROP TRIGGER IF EXISTS job_executions_deleted_notify ON public.job_executions;
CREATE TRIGGER job_executions_deleted_notify
  AFTER DELETE ON public.job_executions
  FOR EACH ROW EXECUTE FUNCTION public.job_executions_left_notify();
