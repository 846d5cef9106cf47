-- The audio_cleanup scan: unmarked rows with an audio path, in (created_at, id) order.
-- Partial, so it holds only rows whose audio may still need deleting and shrinks as the
-- job marks them. On a large existing table, build it beforehand with
-- CREATE INDEX CONCURRENTLY under the same name to avoid blocking writes; this
-- statement then does nothing.
CREATE INDEX IF NOT EXISTS idx_transcriptions_audio_cleanup
  ON public.transcriptions (created_at, id)
  WHERE audio_deleted_at IS NULL AND audio_file_path IS NOT NULL;
