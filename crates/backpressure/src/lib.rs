#![doc = include_str!("../README.md")]

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

mod retry;

pub use retry::{backoff_ceiling, full_jitter, parse_retry_after};

/// The factor applied to the limit when the service says it is overloaded.
const DECREASE: f64 = 0.5;
/// How much more slowly the limit grows just below the level that was last refused.
const PROBE_SLOWDOWN: f64 = 16.0;
/// The longest shared cool-down a single `Retry-After` may impose.
const MAX_COOL_DOWN: Duration = Duration::from_secs(300);

/// What an answer says about the service's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The service answered (success or an ordinary refusal): it has room.
    Good,
    /// The service is overloaded (429, 503, `SlowDown`); `retry_after` when it said how
    /// long to wait.
    Overloaded {
        /// The service's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// Says nothing about load (a transport error, a 500).
    Neutral,
}

/// An adaptive limit on requests in flight. Cheap to clone: clones share the limit.
#[derive(Clone)]
pub struct AdaptiveLimit {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    changed: Notify,
    max: usize,
}

struct State {
    /// The current limit; requests in flight may reach its integer part (at least 1).
    limit: f64,
    in_flight: usize,
    /// Bumped at every decrease: an overload answer to a request started before the last
    /// decrease was already acted on.
    generation: u64,
    /// The integer limit at which the service last said it was overloaded.
    ceiling: Option<usize>,
    /// No request starts before this instant (a `Retry-After` shared by everyone).
    cool_until: Option<Instant>,
    decreases: u64,
}

impl fmt::Debug for AdaptiveLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimit")
            .field("current", &self.current())
            .field("max", &self.inner.max)
            .finish()
    }
}

impl AdaptiveLimit {
    /// A limit that starts at, and never exceeds, `max` requests in flight (at least 1).
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    limit: max as f64,
                    in_flight: 0,
                    generation: 0,
                    ceiling: None,
                    cool_until: None,
                    decreases: 0,
                }),
                changed: Notify::new(),
                max,
            }),
        }
    }

    /// The configured maximum.
    pub fn max(&self) -> usize {
        self.inner.max
    }

    /// Requests allowed in flight right now.
    pub fn current(&self) -> usize {
        allowed(&self.state())
    }

    /// How many times the limit was lowered since it was created.
    pub fn decreases(&self) -> u64 {
        self.state().decreases
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Back to the maximum, forgetting past overloads (requests in flight keep their
    /// slots). For the start of a new run, long after whatever slowed the last one down.
    pub fn reset(&self) {
        let mut state = self.state();
        state.limit = self.inner.max as f64;
        state.ceiling = None;
        state.cool_until = None;
        state.generation += 1;
        drop(state);
        self.inner.changed.notify_waiters();
    }

    /// Waits for a slot under the current limit (and for any shared cool-down to pass).
    /// Report the answer with [`Permit::record`]; dropping the permit frees the slot.
    pub async fn acquire(&self) -> Permit {
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let wait_until = {
                let mut state = self.state();
                let now = Instant::now();
                match state.cool_until {
                    Some(until) if until > now => Some(until),
                    _ => {
                        state.cool_until = None;
                        if state.in_flight < allowed(&state) {
                            state.in_flight += 1;
                            return Permit {
                                limit: self.clone(),
                                generation: state.generation,
                            };
                        }
                        None
                    }
                }
            };
            match wait_until {
                Some(until) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => {}
                        () = &mut changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    fn record(&self, generation: u64, signal: Signal) {
        let mut state = self.state();
        match signal {
            Signal::Neutral => return,
            Signal::Good => {
                let before = allowed(&state);
                let near_ceiling = state
                    .ceiling
                    .is_some_and(|ceiling| state.limit + 1.0 >= ceiling as f64);
                let step = if near_ceiling {
                    1.0 / (state.limit * PROBE_SLOWDOWN)
                } else {
                    1.0 / state.limit
                };
                state.limit = (state.limit + step).min(self.inner.max as f64);
                if state
                    .ceiling
                    .is_some_and(|ceiling| state.limit >= ceiling as f64 + 1.0)
                {
                    // Served above the level once refused: the service has grown.
                    state.ceiling = None;
                }
                if allowed(&state) == before {
                    return;
                }
            }
            Signal::Overloaded { retry_after } => {
                if let Some(wait) = retry_after {
                    let until = Instant::now() + wait.min(MAX_COOL_DOWN);
                    state.cool_until = Some(state.cool_until.map_or(until, |u| u.max(until)));
                }
                if generation == state.generation {
                    let refused_at = allowed(&state);
                    state.ceiling = Some(refused_at);
                    state.limit = (state.limit * DECREASE).max(1.0);
                    state.generation += 1;
                    state.decreases += 1;
                    log::debug!(
                        "backpressure: overloaded at {refused_at} in flight; limit now {}",
                        allowed(&state)
                    );
                }
                return;
            }
        }
        drop(state);
        self.inner.changed.notify_waiters();
    }

    fn release(&self) {
        let mut state = self.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        drop(state);
        self.inner.changed.notify_waiters();
    }
}

fn allowed(state: &State) -> usize {
    (state.limit.floor() as usize).max(1)
}

/// A slot under an [`AdaptiveLimit`], held while one request is in flight.
#[must_use = "a permit frees its slot when dropped"]
pub struct Permit {
    limit: AdaptiveLimit,
    generation: u64,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("generation", &self.generation)
            .finish()
    }
}

impl Permit {
    /// Reports what the service answered to this request, and frees the slot.
    pub fn record(self, signal: Signal) {
        self.limit.record(self.generation, signal);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limit.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OVERLOADED: Signal = Signal::Overloaded { retry_after: None };

    #[tokio::test]
    async fn the_limit_starts_at_the_maximum_and_holds_requests_beyond_it() {
        let limit = AdaptiveLimit::new(2);
        let a = limit.acquire().await;
        let _b = limit.acquire().await;
        let third = tokio::time::timeout(Duration::from_millis(50), limit.acquire()).await;
        assert!(third.is_err(), "a third request must wait");
        drop(a);
        let third = tokio::time::timeout(Duration::from_secs(5), limit.acquire()).await;
        assert!(third.is_ok(), "a freed slot lets the next one in");
    }

    #[tokio::test]
    async fn an_overload_halves_the_limit_once_per_generation() {
        let limit = AdaptiveLimit::new(16);
        let mut permits = Vec::new();
        for _ in 0..16 {
            permits.push(limit.acquire().await);
        }
        // Every request in flight is refused: one decrease, not sixteen.
        for permit in permits {
            permit.record(OVERLOADED);
        }
        assert_eq!(limit.current(), 8);
        let permit = limit.acquire().await;
        permit.record(OVERLOADED);
        assert_eq!(limit.current(), 4);
        for _ in 0..10 {
            limit.acquire().await.record(OVERLOADED);
        }
        assert_eq!(limit.current(), 1, "never below one");
        assert_eq!(limit.decreases(), 2 + 10);
    }

    #[tokio::test]
    async fn good_answers_raise_the_limit_back_to_the_maximum() {
        let limit = AdaptiveLimit::new(8);
        limit.acquire().await.record(OVERLOADED);
        assert_eq!(limit.current(), 4);
        for _ in 0..2000 {
            limit.acquire().await.record(Signal::Good);
        }
        assert_eq!(limit.current(), 8);
    }

    #[tokio::test]
    async fn growth_slows_just_below_the_level_last_refused() {
        let limit = AdaptiveLimit::new(16);
        // Refused at 10 in flight: down to 5.
        limit.state().limit = 10.0;
        limit.acquire().await.record(OVERLOADED);
        assert_eq!(limit.current(), 5);
        let mut answers = 0;
        while limit.current() < 9 {
            limit.acquire().await.record(Signal::Good);
            answers += 1;
        }
        let fast = answers;
        while limit.current() < 10 {
            limit.acquire().await.record(Signal::Good);
            answers += 1;
        }
        assert!(
            answers - fast > 3 * fast,
            "from 5 to 9 took {fast} answers, 9 to 10 only {}",
            answers - fast
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_pauses_every_new_request_until_it_has_passed() {
        let limit = AdaptiveLimit::new(4);
        let started = Instant::now();
        limit.acquire().await.record(Signal::Overloaded {
            retry_after: Some(Duration::from_secs(3)),
        });
        let waiting = {
            let limit = limit.clone();
            tokio::spawn(async move {
                let _permit = limit.acquire().await;
                Instant::now()
            })
        };
        let admitted = waiting.await.unwrap();
        assert!(admitted - started >= Duration::from_secs(3));
    }

    #[tokio::test]
    async fn neutral_answers_change_nothing() {
        let limit = AdaptiveLimit::new(4);
        limit.acquire().await.record(Signal::Neutral);
        assert_eq!(limit.current(), 4);
        assert_eq!(limit.decreases(), 0);
    }
}
