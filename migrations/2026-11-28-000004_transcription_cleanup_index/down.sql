DROP INDEX IF EXISTS public.idx_transcriptions_audio_cleanup;
