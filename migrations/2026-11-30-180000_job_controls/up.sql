-- The operator console's state (issue 18): what an operator switched at run time, what each
-- run logged, and which servers are alive. Guarded, because the database may be one adopted
-- from the old system.

-- One row per job an operator ever paused. A paused job's scheduled slots are not claimed
-- (the claim in db/src/execution_log.rs checks this table in the same statement), so the
-- pause holds on every server at once and across restarts. DISABLED_JOBS stays the
-- config-level switch; this is the run-time one.
CREATE TABLE IF NOT EXISTS public.job_controls (
  job_name VARCHAR(100) PRIMARY KEY,
  paused BOOLEAN NOT NULL DEFAULT false,
  paused_at TIMESTAMPTZ NULL,
  paused_by VARCHAR(100) NULL,
  pause_reason TEXT NULL,
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every change is announced on the `job_events` channel, so that a server listening there
-- can tell its browsers without polling.
CREATE OR REPLACE FUNCTION public.job_controls_notify() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('job_events', json_build_object('kind', 'job', 'job_name', NEW.job_name)::text);
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS job_controls_notify ON public.job_controls;
CREATE TRIGGER job_controls_notify
  AFTER INSERT OR UPDATE ON public.job_controls
  FOR EACH ROW EXECUTE FUNCTION public.job_controls_notify();

-- The log lines of each run (info and above), bounded per run; deleted with the run.
CREATE TABLE IF NOT EXISTS public.job_execution_events (
  id BIGSERIAL PRIMARY KEY,
  execution_id INTEGER NOT NULL REFERENCES public.job_executions (id) ON DELETE CASCADE,
  at TIMESTAMPTZ NOT NULL DEFAULT now(),
  level VARCHAR(10) NOT NULL,
  message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_execution_events_execution
  ON public.job_execution_events (execution_id, id);

-- The servers: each `serve` upserts its row every heartbeat and deletes it on a clean stop;
-- a row older than two of its heartbeats belongs to a server that is gone.
CREATE TABLE IF NOT EXISTS public.job_workers (
  worker_id VARCHAR(255) PRIMARY KEY,
  version VARCHAR(50) NOT NULL,
  started_at TIMESTAMPTZ NOT NULL,
  last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  heartbeat_secs INTEGER NOT NULL CHECK (heartbeat_secs > 0)
);
