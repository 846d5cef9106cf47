-- The change feed: every insert or update of an execution is announced on the
-- `job_events` channel, whichever server (or person, or old system) wrote it. Each server
-- listens on a dedicated connection and re-reads the rows it is told about, so the
-- payload stays small: {"kind":"execution","id":…,"job_name":…,"status":…}.
-- Notifications are sent at commit and only to sessions listening at that moment; a
-- server that was disconnected re-reads the tables when it reconnects.
CREATE OR REPLACE FUNCTION public.job_executions_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('job_events', json_build_object(
    'kind', 'execution',
    'id', NEW.id,
    'job_name', NEW.job_name,
    'status', NEW.status)::text);
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS job_executions_notify ON public.job_executions;
CREATE TRIGGER job_executions_notify
  AFTER INSERT OR UPDATE ON public.job_executions
  FOR EACH ROW EXECUTE FUNCTION public.job_executions_notify();
