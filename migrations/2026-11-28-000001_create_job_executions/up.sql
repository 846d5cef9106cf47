-- Every execution of every job. The contract's columns come first, unchanged; the ones
-- after scheduled_for carry one-run-per-slot, leases, retries and dry runs.
CREATE TABLE public.job_executions (
  id SERIAL PRIMARY KEY,
  job_name VARCHAR(100) NOT NULL,
  status VARCHAR(20) NOT NULL CHECK (status IN ('running', 'success', 'failed')),
  started_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
  completed_at TIMESTAMPTZ,
  duration_ms INTEGER,
  stats JSONB DEFAULT '{}',
  error_message TEXT,
  created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
  -- The cron slot this execution belongs to; NULL for a manual run.
  scheduled_for TIMESTAMPTZ NULL,
  triggered_by VARCHAR(20) NOT NULL DEFAULT 'manual'
    CHECK (triggered_by IN ('schedule', 'catch_up', 'manual')),
  -- 1 for the first try of a slot, 2 for its first retry, ...
  attempt INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),
  dry_run BOOLEAN NOT NULL DEFAULT FALSE,
  -- The server running it (host:port) and its lease, renewed by heartbeats.
  worker_id VARCHAR(255) NULL,
  heartbeat_at TIMESTAMPTZ NULL,
  lease_expires_at TIMESTAMPTZ NULL
);

CREATE INDEX idx_job_executions_job_name ON public.job_executions (job_name);
CREATE INDEX idx_job_executions_status ON public.job_executions (status);
CREATE INDEX idx_job_executions_started_at ON public.job_executions (started_at DESC);
CREATE INDEX idx_job_executions_job_name_started_at
  ON public.job_executions (job_name, started_at DESC);

-- One execution per slot and attempt, however many servers share the database: a server
-- claims a slot by inserting its row, and only the server whose insert succeeded runs it.
CREATE UNIQUE INDEX uq_job_executions_slot
  ON public.job_executions (job_name, scheduled_for, attempt)
  WHERE scheduled_for IS NOT NULL;

-- A job never runs twice at once, whatever started it.
CREATE UNIQUE INDEX uq_job_executions_one_running
  ON public.job_executions (job_name)
  WHERE status = 'running';

-- Finds expired leases without scanning the history.
CREATE INDEX idx_job_executions_running_lease
  ON public.job_executions (lease_expires_at)
  WHERE status = 'running';
