-- transcriptions belongs to the product's main application. This service only reads and
-- updates the columns below, so it creates the table and columns only where they are
-- missing, and marks the table when it created it (so that down.sql never drops the
-- application's own table).
DO $$
BEGIN
  IF to_regclass('public.transcriptions') IS NULL THEN
    CREATE TABLE public.transcriptions (
      id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
      created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    COMMENT ON TABLE public.transcriptions IS 'created by background-jobs';
  END IF;
END
$$;

ALTER TABLE public.transcriptions
  ADD COLUMN IF NOT EXISTS audio_file_path TEXT NULL,
  ADD COLUMN IF NOT EXISTS audio_deleted_at TIMESTAMPTZ NULL,
  ADD COLUMN IF NOT EXISTS stt_provider_request_id TEXT NULL,
  ADD COLUMN IF NOT EXISTS audio_cost_usd NUMERIC(12,6) NULL;
