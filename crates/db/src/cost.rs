//! Queries of the `cost_update` job over `transcriptions`.
