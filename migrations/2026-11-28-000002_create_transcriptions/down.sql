-- Drops the table only when this service created it; the application's own table and its
-- data are left alone.
DO $$
BEGIN
  IF obj_description('public.transcriptions'::regclass, 'pg_class') = 'created by background-jobs' THEN
    DROP TABLE public.transcriptions;
  END IF;
END
$$;
