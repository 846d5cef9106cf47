// @generated automatically by Diesel CLI.

diesel::table! {
    job_controls (job_name) {
        #[max_length = 100]
        job_name -> Varchar,
        paused -> Bool,
        paused_at -> Nullable<Timestamptz>,
        #[max_length = 100]
        paused_by -> Nullable<Varchar>,
        pause_reason -> Nullable<Text>,
        updated_at -> Timestamptz,
        version -> Int8,
    }
}

diesel::table! {
    job_execution_events (id) {
        id -> Int8,
        execution_id -> Int4,
        at -> Timestamptz,
        #[max_length = 10]
        level -> Varchar,
        message -> Text,
    }
}

diesel::table! {
    job_executions (id) {
        id -> Int4,
        #[max_length = 100]
        job_name -> Varchar,
        #[max_length = 20]
        status -> Varchar,
        started_at -> Timestamptz,
        completed_at -> Nullable<Timestamptz>,
        duration_ms -> Nullable<Int4>,
        stats -> Nullable<Jsonb>,
        error_message -> Nullable<Text>,
        created_at -> Nullable<Timestamptz>,
        scheduled_for -> Nullable<Timestamptz>,
        #[max_length = 20]
        triggered_by -> Varchar,
        attempt -> Int4,
        dry_run -> Bool,
        #[max_length = 255]
        worker_id -> Nullable<Varchar>,
        heartbeat_at -> Nullable<Timestamptz>,
        lease_expires_at -> Nullable<Timestamptz>,
        #[max_length = 20]
        requested_by -> Nullable<Varchar>,
        cancel_requested_at -> Nullable<Timestamptz>,
        #[max_length = 100]
        cancel_requested_by -> Nullable<Varchar>,
        retry_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    job_notification_state (job_name) {
        #[max_length = 100]
        job_name -> Varchar,
        #[max_length = 20]
        state -> Varchar,
        since -> Timestamptz,
        watch_from -> Timestamptz,
        last_success_at -> Nullable<Timestamptz>,
        last_failure_at -> Nullable<Timestamptz>,
        failures -> Int4,
        last_execution_id -> Nullable<Int4>,
        last_error -> Nullable<Text>,
        last_notified_at -> Nullable<Timestamptz>,
        version -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    job_notices (id) {
        id -> Int8,
        #[max_length = 100]
        job_name -> Varchar,
        #[max_length = 40]
        kind -> Varchar,
        subject -> Text,
        plain_text -> Text,
        html -> Text,
        webhook_body -> Jsonb,
        message_id -> Text,
        email_pending -> Bool,
        webhook_pending -> Bool,
        tries -> Int4,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        claimed_at -> Timestamptz,
    }
}

diesel::table! {
    job_workers (worker_id) {
        #[max_length = 255]
        worker_id -> Varchar,
        #[max_length = 50]
        version -> Varchar,
        started_at -> Timestamptz,
        last_seen_at -> Timestamptz,
        heartbeat_secs -> Int4,
        settings -> Nullable<Jsonb>,
    }
}

diesel::table! {
    transcriptions (id) {
        id -> Uuid,
        created_at -> Timestamptz,
        audio_file_path -> Nullable<Text>,
        audio_deleted_at -> Nullable<Timestamptz>,
        stt_provider_request_id -> Nullable<Text>,
        audio_cost_usd -> Nullable<Numeric>,
        cost_status -> Nullable<Text>,
        cost_error -> Nullable<Text>,
        cost_check_count -> Int4,
        cost_checked_at -> Nullable<Timestamptz>,
        cost_gave_up_at -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(job_execution_events -> job_executions (execution_id));

diesel::allow_tables_to_appear_in_same_query!(
    job_controls,
    job_execution_events,
    job_executions,
    job_notices,
    job_notification_state,
    job_workers,
    transcriptions,
);
