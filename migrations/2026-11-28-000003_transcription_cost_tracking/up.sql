-- Bookkeeping of the cost_update job on the application's transcriptions table, so that a
-- row that can never be priced is not asked about forever. Columns are only added where
-- missing: the table belongs to the product's main application.
ALTER TABLE public.transcriptions
  -- The outcome of the last check: priced, pending, no_price, request_failed, not_found,
  -- invalid_price, bad_answer, rejected, forbidden, unavailable, no_project,
  -- no_request_id or malformed_request_id.
  ADD COLUMN IF NOT EXISTS cost_status TEXT NULL,
  -- Why the last check stored no cost, in words (never a secret).
  ADD COLUMN IF NOT EXISTS cost_error TEXT NULL,
  -- Runs whose definite answer carried no price; transient API errors do not count.
  ADD COLUMN IF NOT EXISTS cost_check_count INTEGER NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS cost_checked_at TIMESTAMPTZ NULL,
  -- Set when the job stopped asking about this row; clear it to have the row tried again.
  ADD COLUMN IF NOT EXISTS cost_gave_up_at TIMESTAMPTZ NULL;

-- The rows cost_update still has to price, in id order for its keyset pagination: small
-- (only the backlog), so each batch is an index range scan whatever the table's size.
-- On a very large table an operator may create the same index CONCURRENTLY beforehand;
-- IF NOT EXISTS then leaves it alone.
CREATE INDEX IF NOT EXISTS idx_transcriptions_cost_pending
  ON public.transcriptions (id)
  WHERE audio_cost_usd IS NULL
    AND stt_provider_request_id IS NOT NULL
    AND cost_gave_up_at IS NULL;
