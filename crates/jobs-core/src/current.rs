//! The execution the current task works for.
//!
//! The runner enters [`scope`] around each run, so whatever runs inside it — the job, the
//! clients it calls, the runner's own start and end lines — can ask [`get`] which job and
//! execution it belongs to without having it passed down. Log formatters use it to tag
//! lines with `job` and `execution_id`; a per-run log capture can use it to know where a
//! line goes. It is a tokio task-local: a task spawned inside the run does not inherit it
//! unless that task is wrapped in [`scope`] too.

use std::future::Future;
use std::sync::Arc;

/// Which run the current task works for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentExecution {
    /// The job's name (`audio_cleanup`).
    pub job: Arc<str>,
    /// The execution row of the run.
    pub execution_id: i64,
}

impl CurrentExecution {
    /// The run `execution_id` of `job`.
    pub fn new(job: &str, execution_id: i64) -> Self {
        Self {
            job: Arc::from(job),
            execution_id,
        }
    }
}

tokio::task_local! {
    static CURRENT: CurrentExecution;
}

/// Runs `work` as part of `execution`.
pub async fn scope<F: Future>(execution: CurrentExecution, work: F) -> F::Output {
    CURRENT.scope(execution, work).await
}

/// The execution the calling task works for, if it runs inside a [`scope`].
pub fn get() -> Option<CurrentExecution> {
    CURRENT.try_with(Clone::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_execution_is_known_inside_its_scope_only() {
        assert_eq!(get(), None);
        let inside = scope(CurrentExecution::new("cost_update", 7), async {
            tokio::task::yield_now().await;
            get()
        })
        .await;
        assert_eq!(inside, Some(CurrentExecution::new("cost_update", 7)));
        assert_eq!(get(), None);
    }

    #[tokio::test]
    async fn nested_scopes_see_the_innermost_execution() {
        let seen = scope(CurrentExecution::new("a", 1), async {
            scope(CurrentExecution::new("b", 2), async { get() }).await
        })
        .await;
        assert_eq!(seen.map(|c| c.execution_id), Some(2));
    }
}
