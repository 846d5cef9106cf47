-- Every execution of every job.
--
-- This migration also adopts the table of the Node.js system this service replaces: there
-- `job_executions` already exists, created with exactly the contract's DDL (the first
-- statement below) and its four indexes, and holds that system's history. Every statement
-- is therefore guarded: the table is created only where it is missing, this service's
-- columns and indexes are added only where missing, and an index the old system already
-- has (under any name) is not built twice. See migrations/README.md.

-- The contract's table, exactly as the old system created it.
CREATE TABLE IF NOT EXISTS public.job_executions (
  id SERIAL PRIMARY KEY,
  job_name VARCHAR(100) NOT NULL,
  status VARCHAR(20) NOT NULL CHECK (status IN ('running', 'success', 'failed')),
  started_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
  completed_at TIMESTAMPTZ,
  duration_ms INTEGER,
  stats JSONB DEFAULT '{}',
  error_message TEXT,
  created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP
);

-- Takeover: a table without this service's columns was written by the old system, and a
-- row it left 'running' belongs to a process that is gone (its cron must be stopped before
-- the switch). Such rows are closed as failed at once, which also lets the one-running-
-- per-job index below be built. On a new table this updates nothing.
DO $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM information_schema.columns
    WHERE table_schema = 'public' AND table_name = 'job_executions' AND column_name = 'worker_id'
  ) THEN
    UPDATE public.job_executions
    SET status = 'failed',
        completed_at = now(),
        duration_ms = LEAST(2147483647,
          GREATEST(0, FLOOR(EXTRACT(EPOCH FROM (now() - started_at)) * 1000)))::int,
        error_message = 'left running by the previous (Node.js) jobs system; closed as failed '
          || 'when this service took over the database'
    WHERE status = 'running';
  END IF;
END
$$;

-- This service's columns, after the contract's. Constant defaults: PostgreSQL adds them
-- without rewriting the table, and old rows read as manual first tries, not dry runs,
-- with no slot, worker or lease.
ALTER TABLE public.job_executions
  -- The cron slot this execution belongs to; NULL for a manual run.
  ADD COLUMN IF NOT EXISTS scheduled_for TIMESTAMPTZ NULL,
  ADD COLUMN IF NOT EXISTS triggered_by VARCHAR(20) NOT NULL DEFAULT 'manual'
    CHECK (triggered_by IN ('schedule', 'catch_up', 'manual')),
  -- 1 for the first try of a slot, 2 for its first retry, ...
  ADD COLUMN IF NOT EXISTS attempt INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),
  ADD COLUMN IF NOT EXISTS dry_run BOOLEAN NOT NULL DEFAULT FALSE,
  -- The server running it (host:port) and its lease, renewed by heartbeats.
  ADD COLUMN IF NOT EXISTS worker_id VARCHAR(255) NULL,
  ADD COLUMN IF NOT EXISTS heartbeat_at TIMESTAMPTZ NULL,
  ADD COLUMN IF NOT EXISTS lease_expires_at TIMESTAMPTZ NULL;

-- The contract's four indexes. The old system created them under names of its own: an
-- index with the same definition, whatever its name, counts as present.
DO $$
DECLARE
  wanted record;
BEGIN
  FOR wanted IN
    SELECT * FROM (VALUES
      ('idx_job_executions_job_name', '(job_name)'),
      ('idx_job_executions_status', '(status)'),
      ('idx_job_executions_started_at', '(started_at DESC)'),
      ('idx_job_executions_job_name_started_at', '(job_name, started_at DESC)')
    ) AS w (name, columns)
  LOOP
    IF NOT EXISTS (
      SELECT 1 FROM pg_index i
      WHERE i.indrelid = 'public.job_executions'::regclass
        AND i.indpred IS NULL
        AND NOT i.indisunique
        AND i.indisvalid
        AND substring(pg_get_indexdef(i.indexrelid) FROM ' USING (.*)$') = 'btree ' || wanted.columns
    ) THEN
      EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON public.job_executions USING btree %s',
                     wanted.name, wanted.columns);
    END IF;
  END LOOP;
END
$$;

-- One execution per slot and attempt, however many servers share the database: a server
-- claims a slot by inserting its row, and only the server whose insert succeeded runs it.
-- (Old rows have no slot, so they never conflict.)
CREATE UNIQUE INDEX IF NOT EXISTS uq_job_executions_slot
  ON public.job_executions (job_name, scheduled_for, attempt)
  WHERE scheduled_for IS NOT NULL;

-- A job never runs twice at once, whatever started it. (Old 'running' rows were closed
-- above, so this builds on an adopted table too.)
CREATE UNIQUE INDEX IF NOT EXISTS uq_job_executions_one_running
  ON public.job_executions (job_name)
  WHERE status = 'running';

-- Finds expired leases without scanning the history.
CREATE INDEX IF NOT EXISTS idx_job_executions_running_lease
  ON public.job_executions (lease_expires_at)
  WHERE status = 'running';
