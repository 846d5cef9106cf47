-- Failure-notification state: one row per job, shared by every server, so that "one notice
-- per job per change of state" holds across restarts and replicas. A server reads the row,
-- decides, and writes it back only if `version` is still what it read (compare-and-set);
-- the server whose write wins sends the notice, the others re-read and find nothing to do.
CREATE TABLE IF NOT EXISTS public.job_notification_state (
  job_name VARCHAR(100) PRIMARY KEY,
  -- ok: nothing to report; failing: its last run failed for good; overdue: no success for
  -- longer than the overdue factor times its interval.
  state VARCHAR(20) NOT NULL DEFAULT 'ok' CHECK (state IN ('ok', 'failing', 'overdue')),
  -- When the current state began.
  since TIMESTAMPTZ NOT NULL DEFAULT now(),
  -- Overdue is measured from the later of last_success_at and this: when the row was
  -- created (a fresh install does not alert at once), moved forward while the job is
  -- disabled (switching it back on does not alert at once either).
  watch_from TIMESTAMPTZ NOT NULL DEFAULT now(),
  last_success_at TIMESTAMPTZ NULL,
  last_failure_at TIMESTAMPTZ NULL,
  -- Runs that failed for good since the state became 'failing'.
  failures INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
  -- The newest execution applied (job_executions.id; no foreign key, history may be
  -- pruned): an execution observed twice, or late, changes nothing.
  last_execution_id INTEGER NULL,
  last_error TEXT NULL,
  -- The last notice claimed for this job; reminders are measured from it.
  last_notified_at TIMESTAMPTZ NULL,
  version BIGINT NOT NULL DEFAULT 0,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
