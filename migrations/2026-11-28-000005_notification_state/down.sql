DROP TABLE IF EXISTS public.job_notification_state;
