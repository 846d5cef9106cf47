DROP INDEX IF EXISTS public.idx_transcriptions_cost_pending;

ALTER TABLE public.transcriptions
  DROP COLUMN IF EXISTS cost_gave_up_at,
  DROP COLUMN IF EXISTS cost_checked_at,
  DROP COLUMN IF EXISTS cost_check_count,
  DROP COLUMN IF EXISTS cost_error,
  DROP COLUMN IF EXISTS cost_status;
