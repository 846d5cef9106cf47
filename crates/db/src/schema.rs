// @generated automatically by Diesel CLI.

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

diesel::allow_tables_to_appear_in_same_query!(job_executions, transcriptions,);
