//! Queries of the `audio_cleanup` job over `transcriptions`.
