//! The batch loop every job shares: a paged scan, bounded concurrent work per item, and
//! batched writes of the results, with a reason tally, an error-streak stop, live progress
//! and cooperative cancellation.
//!
//! A job says only what is particular to it, by implementing [`Pipeline`]: what a page is
//! ([`Pipeline::fetch`], keyset by a cursor), what to do with one item
//! ([`Pipeline::process`]) and what to write for a batch of results ([`Pipeline::write`]).
//! [`run`] drives it:
//!
//! - pages are read one after another; the next page is read as soon as every item of
//!   the last one has started (or, for a job that reads large pages, as soon as only
//!   [`Pipeline::read_ahead`] items of it are left), so at most one page waits while items
//!   are in flight;
//! - up to [`Settings::concurrency`] items are processed at once, across page boundaries;
//! - results are handed to the writer in batches of [`Settings::batch`] (the last one
//!   shorter); up to [`Settings::writers`] batches are written at a time while the next
//!   ones are processed, and no new item starts while a full batch waits for a writer, so
//!   memory stays at a few batches whatever the backlog;
//! - after each written batch the counters are published with
//!   [`JobContext::report_progress`], with [`CONCURRENCY_LIMIT`] set from
//!   [`Pipeline::concurrency_limit`] when the job has an adaptive limit;
//! - a failing item counts towards a streak ([`Pipeline::streak`]); the job decides when
//!   the streak is too long ([`Pipeline::streak_broken`]);
//! - cancellation ([`JobContext::is_cancelled`]) is checked before each page and each
//!   item: nothing more is read or started, the items in flight finish and their results
//!   are written, and the run ends as [`End::Cancelled`].
//!
//! A job stops its run early with a [`Halt`], from an item, from a write (through the
//! run's [`Control`]) or as a streak's end; the kind of halt says what happens to the work
//! in flight. A page that cannot be read halts the run as [`Halt::Drain`]; a batch that
//! cannot be written halts it as [`Halt::Abort`], and nothing more is written.
//!
//! The loop runs in the job's own task (nothing is spawned), so a dropped run drops its
//! work with it.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::Poll;

use async_trait::async_trait;
use futures_util::future::{poll_fn, BoxFuture};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;

use crate::{JobContext, Stats};

/// The counter [`run`] keeps at [`Pipeline::concurrency_limit`]: the work allowed in
/// flight right now (not an item counter).
pub const CONCURRENCY_LIMIT: &str = "concurrency_limit";

/// One page of a scan: its items, and where the next page starts (`None`: this was the
/// last one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<I, C> {
    /// The work of this page, in order.
    pub items: Vec<I>,
    /// The cursor after this page; `None` when no page follows.
    pub next: Option<C>,
}

impl<I, C> Page<I, C> {
    /// A page of a keyset scan read with `LIMIT page_size`: a full page continues after
    /// its last row, a shorter one is the last.
    pub fn keyset(rows: Vec<I>, page_size: usize, cursor: impl FnOnce(&I) -> C) -> Self {
        let next = if rows.len() >= page_size {
            rows.last().map(cursor)
        } else {
            None
        };
        Self { items: rows, next }
    }

    /// The page cut into items of `size` rows (the last one shorter), for a job whose
    /// unit of work is a group of rows (one bulk call per group) and that reads several
    /// groups at a time. An empty page has no item.
    pub fn chunks(self, size: usize) -> Page<Vec<I>, C> {
        let size = size.max(1);
        let mut items = Vec::with_capacity(self.items.len().div_ceil(size));
        let mut rows = self.items.into_iter().peekable();
        while rows.peek().is_some() {
            items.push(rows.by_ref().take(size).collect());
        }
        Page {
            items,
            next: self.next,
        }
    }

    /// The whole page as one item, for a job whose unit of work is a page (one bulk call
    /// per page) rather than a row. An empty page has no item.
    pub fn whole(self) -> Page<Vec<I>, C> {
        Page {
            items: if self.items.is_empty() {
                Vec::new()
            } else {
                vec![self.items]
            },
            next: self.next,
        }
    }
}

/// How a run stops before its scan is done, and why (`E`, the job's own reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Halt<E> {
    /// Read and start nothing more; the items in flight finish and every result is
    /// written.
    Drain(E),
    /// Drop the items in flight; the results already in are written.
    Now(E),
    /// Drop the items in flight and the results not yet handed to the writer; only the
    /// batches already handed over are written.
    Abort(E),
}

impl<E> Halt<E> {
    /// Why the run stops.
    pub fn reason(&self) -> &E {
        match self {
            Halt::Drain(e) | Halt::Now(e) | Halt::Abort(e) => e,
        }
    }

    /// Why the run stops, taken out.
    pub fn into_reason(self) -> E {
        match self {
            Halt::Drain(e) | Halt::Now(e) | Halt::Abort(e) => e,
        }
    }

    fn severity(&self) -> u8 {
        match self {
            Halt::Drain(_) => 1,
            Halt::Now(_) => 2,
            Halt::Abort(_) => 3,
        }
    }
}

/// What a run's items and writes share: the request to halt, and whether one was made.
///
/// The first reason is kept; a later halt of a harsher kind replaces it (an abort after a
/// drain aborts, with the abort's reason).
#[derive(Debug)]
pub struct Control<E> {
    halting: AtomicBool,
    halt: Mutex<Option<Halt<E>>>,
}

impl<E> Default for Control<E> {
    fn default() -> Self {
        Self {
            halting: AtomicBool::new(false),
            halt: Mutex::new(None),
        }
    }
}

impl<E> Control<E> {
    /// Asks the run to stop.
    pub fn halt(&self, halt: Halt<E>) {
        let mut current = self.halt.lock().unwrap_or_else(PoisonError::into_inner);
        let replace = match &*current {
            None => true,
            Some(kept) => halt.severity() > kept.severity(),
        };
        if replace {
            *current = Some(halt);
        }
        self.halting.store(true, Ordering::SeqCst);
    }

    /// True once a halt was asked for: an item that sees it should start nothing it
    /// cannot finish quickly.
    pub fn is_halting(&self) -> bool {
        self.halting.load(Ordering::SeqCst)
    }

    fn severity(&self) -> u8 {
        self.halt
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or(0, Halt::severity)
    }

    fn take(&self) -> Option<Halt<E>> {
        self.halt
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// How one result moves the run's streak of consecutive failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streak {
    /// Neither a success nor a failure of the outside service (a row's own bad data).
    Keep,
    /// A success: the streak starts again from zero.
    Reset,
    /// A failure: the streak grows by one.
    Fail,
}

/// Items per reason, with the first few as examples: what a run's summary log shows
/// instead of one line per item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally<R: Ord, X> {
    reasons: BTreeMap<R, Count<X>>,
    examples: usize,
}

/// One reason's entry in a [`Tally`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count<X> {
    /// Items counted for the reason.
    pub items: i64,
    /// The first examples given, at most the tally's limit.
    pub examples: Vec<X>,
}

impl<R: Ord, X> Tally<R, X> {
    /// An empty tally that keeps up to `examples` examples per reason.
    pub fn new(examples: usize) -> Self {
        Self {
            reasons: BTreeMap::new(),
            examples,
        }
    }

    /// Counts `items` for `reason`, keeping `example` while the reason has fewer than the
    /// limit.
    pub fn add(&mut self, reason: R, items: usize, example: Option<X>) {
        let count = self.reasons.entry(reason).or_insert_with(|| Count {
            items: 0,
            examples: Vec::new(),
        });
        count.items = count
            .items
            .saturating_add(i64::try_from(items).unwrap_or(i64::MAX));
        if let Some(example) = example {
            if count.examples.len() < self.examples {
                count.examples.push(example);
            }
        }
    }

    /// Adds every reason of `other`, keeping the earlier examples first.
    pub fn merge(&mut self, other: Tally<R, X>) {
        for (reason, count) in other.reasons {
            let mine = self.reasons.entry(reason).or_insert_with(|| Count {
                items: 0,
                examples: Vec::new(),
            });
            mine.items = mine.items.saturating_add(count.items);
            let room = self.examples.saturating_sub(mine.examples.len());
            mine.examples.extend(count.examples.into_iter().take(room));
        }
    }

    /// The reasons in their order, with their counts.
    pub fn iter(&self) -> impl Iterator<Item = (&R, &Count<X>)> {
        self.reasons.iter()
    }

    /// The count of one reason, if it was seen.
    pub fn get(&self, reason: &R) -> Option<&Count<X>> {
        self.reasons.get(reason)
    }

    /// True when no reason was counted.
    pub fn is_empty(&self) -> bool {
        self.reasons.is_empty()
    }
}

/// What a run has come to: its counters, its reason tally and the text of the latest
/// failure, for the summary log and the run's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals<R: Ord, X> {
    /// The job's counters, in the order of its stats keys.
    pub stats: Stats,
    /// Items per reason (skipped, failed…), with examples.
    pub reasons: Tally<R, X>,
    /// The latest failure seen, if any.
    pub last_error: Option<String>,
}

impl<R: Ord, X> Totals<R, X> {
    /// Totals starting from `stats` (usually [`Stats::with_keys`]), keeping up to
    /// `examples` examples per reason.
    pub fn new(stats: Stats, examples: usize) -> Self {
        Self {
            stats,
            reasons: Tally::new(examples),
            last_error: None,
        }
    }

    /// Empty totals with the same example limit.
    fn empty_like(&self) -> Self {
        Self::new(Stats::new(), self.reasons.examples)
    }

    /// Adds `other` to these totals; its failure, if any, becomes the latest.
    pub fn merge(&mut self, other: Totals<R, X>) {
        self.stats.merge(&other.stats);
        self.reasons.merge(other.reasons);
        if other.last_error.is_some() {
            self.last_error = other.last_error;
        }
    }
}

/// The steps of one run of a batch job; see the module docs.
///
/// The implementing type is usually a per-run struct holding what the run needs
/// (borrowed clients, the run's cutoff, caches shared by its items).
#[async_trait]
pub trait Pipeline: Send + Sync {
    /// Where a page starts: the last key of the page before.
    type Cursor: Send;
    /// One unit of work: a row, or a whole page ([`Page::whole`]).
    type Item: Send;
    /// What processing one item came to, until it is written.
    type Done: Send;
    /// Why an item was skipped or failed, in the order the summary lists them.
    type Reason: Ord + Send;
    /// An example kept for a reason (an id, an id with a message…).
    type Example: Send;
    /// Why the run stops early.
    type Error: Send;

    /// Reads the page after `after` (`None`: the first page).
    async fn fetch(
        &self,
        after: Option<Self::Cursor>,
    ) -> Result<Page<Self::Item, Self::Cursor>, Self::Error>;

    /// Does the work of one item. An `Err` loses the item's result and halts the run.
    async fn process(
        &self,
        item: Self::Item,
        control: &Control<Self::Error>,
    ) -> Result<Self::Done, Halt<Self::Error>>;

    /// Writes a batch of results and counts them into `totals` (this batch's totals,
    /// added to the run's when the write succeeds). An `Err` drops this batch's totals,
    /// aborts the run and writes nothing more.
    async fn write(
        &self,
        batch: Vec<Self::Done>,
        totals: &mut Totals<Self::Reason, Self::Example>,
        control: &Control<Self::Error>,
    ) -> Result<(), Self::Error>;

    /// How a result moves the streak of consecutive failures; by default it does not.
    fn streak(&self, _done: &Self::Done) -> Streak {
        Streak::Keep
    }

    /// Called each time the streak grows, with its length and the latest failure: a halt
    /// stops the run.
    fn streak_broken(&self, _in_a_row: u32, _last: &Self::Done) -> Option<Halt<Self::Error>> {
        None
    }

    /// The work allowed in flight right now, when an adaptive limit (the `backpressure`
    /// crate) lowers it below [`Settings::concurrency`]; shown as [`CONCURRENCY_LIMIT`].
    fn concurrency_limit(&self) -> Option<usize> {
        None
    }

    /// How many items of the last page may still be waiting to start when the next page
    /// is read: 0 (the default) reads it once every item has started. A job whose pages
    /// hold many items and take long to read says more, so that the read overlaps the
    /// work instead of stalling it; up to this many items more are then held at once.
    fn read_ahead(&self) -> usize {
        0
    }
}

/// How much work a run keeps in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Items processed at once (at least 1).
    pub concurrency: usize,
    /// Results per write (at least 1).
    pub batch: usize,
    /// Writes in flight at once (at least 1): one keeps the batches in order; more suit
    /// batches that are independent of each other.
    pub writers: usize,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End<E> {
    /// Every page was read and every item written.
    Done,
    /// The run was cancelled before its scan was done; what was started is written.
    Cancelled,
    /// The run was halted, for this reason.
    Halted(E),
}

/// What [`run`] returns: how the run ended and what it came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report<R: Ord, X, E> {
    /// How the run ended.
    pub end: End<E>,
    /// The counters, reasons and latest failure of every written batch.
    pub totals: Totals<R, X>,
}

/// Where the scan stands.
enum Scan<C> {
    /// The next page starts after this cursor (`None`: at the beginning).
    Next(Option<C>),
    /// A page is being read.
    Fetching,
    /// No page is left, or no more will be read.
    Over,
}

/// What finished among the reads and the items.
enum Event<P: Pipeline + ?Sized> {
    Fetched(Result<Page<P::Item, P::Cursor>, P::Error>),
    Processed(Result<P::Done, Halt<P::Error>>),
}

/// A batch being written: its totals, and whether the write succeeded.
type Written<'a, P> = Pin<
    Box<
        dyn Future<
                Output = (
                    Totals<<P as Pipeline>::Reason, <P as Pipeline>::Example>,
                    Result<(), <P as Pipeline>::Error>,
                ),
            > + Send
            + 'a,
    >,
>;

/// What the loop waits for next.
enum Next<P: Pipeline + ?Sized> {
    Work(Event<P>),
    Written(Totals<P::Reason, P::Example>, Result<(), P::Error>),
}

/// Runs `pipeline` to its end, adding what it writes to `totals`; see the module docs.
pub async fn run<P: Pipeline>(
    pipeline: &P,
    ctx: &JobContext,
    settings: Settings,
    totals: Totals<P::Reason, P::Example>,
) -> Report<P::Reason, P::Example, P::Error> {
    let concurrency = settings.concurrency.max(1);
    let batch_size = settings.batch.max(1);
    let control = Control::default();
    let control = &control;
    let mut totals = totals;
    let mut work: FuturesUnordered<BoxFuture<'_, Event<P>>> = FuturesUnordered::new();
    let writers = settings.writers.max(1);
    let mut writing: FuturesUnordered<Written<'_, P>> = FuturesUnordered::new();
    let mut scan: Scan<P::Cursor> = Scan::Next(None);
    // Items read and not started yet.
    let mut queue: VecDeque<P::Item> = VecDeque::new();
    // Results not yet handed to the writer, and full batches waiting for it.
    let mut done: Vec<P::Done> = Vec::new();
    let mut ready: VecDeque<Vec<P::Done>> = VecDeque::new();
    let mut in_flight = 0usize;
    let mut in_a_row = 0u32;
    let mut cancelled = false;
    let mut writer_failed = false;
    let mut dropped_in_flight = false;

    loop {
        let severity = control.severity();
        if ctx.is_cancelled() && severity == 0 {
            let left = !queue.is_empty() || !matches!(scan, Scan::Over);
            cancelled |= left;
        }
        let stopping = severity > 0 || ctx.is_cancelled();
        if stopping {
            queue.clear();
            if matches!(scan, Scan::Next(_)) {
                scan = Scan::Over;
            }
        }
        if severity >= 2 && !dropped_in_flight {
            // `Now` and `Abort`: what is in flight is dropped, the read included.
            work = FuturesUnordered::new();
            in_flight = 0;
            scan = Scan::Over;
            dropped_in_flight = true;
        }
        if severity >= 3 {
            done.clear();
        }
        if writer_failed {
            done.clear();
            ready.clear();
        }

        // Full batches go to the writer first: no new item starts while one waits.
        if done.len() >= batch_size {
            ready.push_back(std::mem::take(&mut done));
        }
        if !writer_failed {
            start_writes(
                &mut writing,
                writers,
                &mut ready,
                &totals,
                pipeline,
                control,
            );
        }
        if !stopping {
            while in_flight < concurrency && ready.is_empty() {
                let Some(item) = queue.pop_front() else { break };
                in_flight += 1;
                work.push(
                    pipeline
                        .process(item, control)
                        .map(Event::Processed)
                        .boxed(),
                );
            }
            if queue.len() <= pipeline.read_ahead() && matches!(scan, Scan::Next(_)) {
                if let Scan::Next(after) = std::mem::replace(&mut scan, Scan::Fetching) {
                    work.push(pipeline.fetch(after).map(Event::Fetched).boxed());
                }
            }
        }
        // Nothing more will come: the last, shorter batch goes too.
        let producing = in_flight > 0 || !queue.is_empty() || !matches!(scan, Scan::Over);
        if !producing && !done.is_empty() {
            ready.push_back(std::mem::take(&mut done));
        }
        if !writer_failed {
            start_writes(
                &mut writing,
                writers,
                &mut ready,
                &totals,
                pipeline,
                control,
            );
        }
        if work.is_empty() && writing.is_empty() {
            break;
        }

        let next = poll_fn(|cx| {
            if let Poll::Ready(Some((batch_totals, written))) = writing.poll_next_unpin(cx) {
                return Poll::Ready(Next::Written(batch_totals, written));
            }
            match work.poll_next_unpin(cx) {
                Poll::Ready(Some(event)) => Poll::Ready(Next::Work(event)),
                _ => Poll::Pending,
            }
        })
        .await;

        match next {
            Next::Written(batch_totals, written) => match written {
                Ok(()) => {
                    totals.merge(batch_totals);
                    if let Some(limit) = pipeline.concurrency_limit() {
                        totals.stats.set(CONCURRENCY_LIMIT, count(limit));
                    }
                    ctx.report_progress(&totals.stats);
                }
                Err(e) => {
                    writer_failed = true;
                    control.halt(Halt::Abort(e));
                }
            },
            Next::Work(Event::Fetched(page)) => match page {
                Ok(page) => {
                    scan = match page.next {
                        Some(after) => Scan::Next(Some(after)),
                        None => Scan::Over,
                    };
                    // A page read while the run was stopping is left for the next run.
                    if !(control.is_halting() || ctx.is_cancelled()) {
                        queue.extend(page.items);
                    }
                }
                Err(e) => {
                    scan = Scan::Over;
                    control.halt(Halt::Drain(e));
                }
            },
            Next::Work(Event::Processed(result)) => {
                in_flight -= 1;
                match result {
                    Ok(result) => {
                        match pipeline.streak(&result) {
                            Streak::Keep => {}
                            Streak::Reset => in_a_row = 0,
                            Streak::Fail => {
                                in_a_row = in_a_row.saturating_add(1);
                                if let Some(halt) = pipeline.streak_broken(in_a_row, &result) {
                                    control.halt(halt);
                                }
                            }
                        }
                        done.push(result);
                    }
                    Err(halt) => control.halt(halt),
                }
            }
        }
    }

    if let Some(limit) = pipeline.concurrency_limit() {
        totals.stats.set(CONCURRENCY_LIMIT, count(limit));
    }
    let end = match control.take() {
        Some(halt) => End::Halted(halt.into_reason()),
        None if cancelled => End::Cancelled,
        None => End::Done,
    };
    Report { end, totals }
}

/// Hands waiting batches to the writers while one is free.
fn start_writes<'a, P: Pipeline>(
    writing: &mut FuturesUnordered<Written<'a, P>>,
    writers: usize,
    ready: &mut VecDeque<Vec<P::Done>>,
    totals: &Totals<P::Reason, P::Example>,
    pipeline: &'a P,
    control: &'a Control<P::Error>,
) {
    while writing.len() < writers {
        let Some(batch) = ready.pop_front() else {
            return;
        };
        let mut batch_totals = totals.empty_like();
        writing.push(Box::pin(async move {
            let written = pipeline.write(batch, &mut batch_totals, control).await;
            (batch_totals, written)
        }));
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::Trigger;

    /// Which halt a broken streak asks for.
    type MakeHalt = fn(String) -> Halt<String>;

    /// A scan of the numbers `0..items`, with the behaviour each test needs.
    struct Numbers {
        items: u32,
        page: usize,
        fetches: AtomicUsize,
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
        writes_in_flight: AtomicUsize,
        most_writes_in_flight: AtomicUsize,
        started: Mutex<Vec<u32>>,
        written: Mutex<Vec<Vec<u32>>>,
        /// Processing this item cancels the run.
        cancel_at: Option<(u32, CancellationToken)>,
        /// Which items fail (and grow the streak).
        fails: fn(u32) -> bool,
        /// The streak that halts the run, and how.
        streak_limit: Option<(u32, MakeHalt)>,
        /// Processing this item aborts the run.
        abort_at: Option<u32>,
        /// Reading the page after this cursor fails.
        fail_fetch_after: Option<u32>,
        /// Writing fails.
        fail_write: bool,
        /// Items of a page left to start when the next one is read.
        read_ahead: usize,
        /// How many items had started at each read.
        started_at_fetch: Mutex<Vec<usize>>,
    }

    impl Default for Numbers {
        fn default() -> Self {
            Self {
                items: 10,
                page: 4,
                fetches: AtomicUsize::new(0),
                in_flight: AtomicUsize::new(0),
                most_in_flight: AtomicUsize::new(0),
                writes_in_flight: AtomicUsize::new(0),
                most_writes_in_flight: AtomicUsize::new(0),
                started: Mutex::new(Vec::new()),
                written: Mutex::new(Vec::new()),
                cancel_at: None,
                fails: |_| false,
                streak_limit: None,
                abort_at: None,
                fail_fetch_after: None,
                fail_write: false,
                read_ahead: 0,
                started_at_fetch: Mutex::new(Vec::new()),
            }
        }
    }

    impl Numbers {
        fn written(&self) -> Vec<Vec<u32>> {
            self.written.lock().unwrap().clone()
        }

        fn all_written(&self) -> Vec<u32> {
            let mut all: Vec<u32> = self.written().into_iter().flatten().collect();
            all.sort_unstable();
            all
        }
    }

    #[async_trait]
    impl Pipeline for Numbers {
        type Cursor = u32;
        type Item = u32;
        type Done = (u32, bool);
        type Reason = &'static str;
        type Example = u32;
        type Error = String;

        async fn fetch(&self, after: Option<u32>) -> Result<Page<u32, u32>, String> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let started = self.started.lock().unwrap().len();
            self.started_at_fetch.lock().unwrap().push(started);
            if after.is_some() && after == self.fail_fetch_after {
                return Err(format!("cannot read after {after:?}"));
            }
            let from = after.map_or(0, |a| a + 1);
            let rows: Vec<u32> = (from..self.items).take(self.page).collect();
            Ok(Page::keyset(rows, self.page, |n| *n))
        }

        async fn process(
            &self,
            item: u32,
            _: &Control<String>,
        ) -> Result<(u32, bool), Halt<String>> {
            self.started.lock().unwrap().push(item);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if let Some((at, token)) = &self.cancel_at {
                if *at == item {
                    token.cancel();
                }
            }
            if self.abort_at == Some(item) {
                return Err(Halt::Abort(format!("item {item} aborts")));
            }
            Ok((item, (self.fails)(item)))
        }

        async fn write(
            &self,
            batch: Vec<(u32, bool)>,
            totals: &mut Totals<&'static str, u32>,
            _: &Control<String>,
        ) -> Result<(), String> {
            if self.fail_write {
                return Err("cannot write".to_owned());
            }
            let now = self.writes_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_writes_in_flight.fetch_max(now, Ordering::SeqCst);
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            self.writes_in_flight.fetch_sub(1, Ordering::SeqCst);
            totals
                .stats
                .add("written", i64::try_from(batch.len()).unwrap());
            for (n, failed) in &batch {
                if *failed {
                    totals.stats.incr("failed");
                    totals.reasons.add("failed", 1, Some(*n));
                    totals.last_error = Some(format!("item {n} failed"));
                } else if n % 2 == 1 {
                    totals.reasons.add("odd", 1, Some(*n));
                }
            }
            self.written
                .lock()
                .unwrap()
                .push(batch.into_iter().map(|(n, _)| n).collect());
            Ok(())
        }

        fn streak(&self, (_, failed): &(u32, bool)) -> Streak {
            if *failed {
                Streak::Fail
            } else {
                Streak::Reset
            }
        }

        fn streak_broken(&self, in_a_row: u32, (n, _): &(u32, bool)) -> Option<Halt<String>> {
            let (limit, halt) = self.streak_limit?;
            (in_a_row >= limit).then(|| halt(format!("{in_a_row} in a row, the last {n}")))
        }

        fn concurrency_limit(&self) -> Option<usize> {
            Some(7)
        }

        fn read_ahead(&self) -> usize {
            self.read_ahead
        }
    }

    fn ctx() -> (JobContext, CancellationToken) {
        let token = CancellationToken::new();
        let ctx = JobContext::new(1, Trigger::Manual, false).with_parts(None, token.clone());
        (ctx, token)
    }

    async fn go(
        numbers: &Numbers,
        ctx: &JobContext,
        concurrency: usize,
        batch: usize,
    ) -> Report<&'static str, u32, String> {
        let settings = Settings {
            concurrency,
            batch,
            writers: 1,
        };
        go_with(numbers, ctx, settings).await
    }

    async fn go_with(
        numbers: &Numbers,
        ctx: &JobContext,
        settings: Settings,
    ) -> Report<&'static str, u32, String> {
        let totals = Totals::new(Stats::with_keys(&["written", "failed"]), 2);
        run(numbers, ctx, settings, totals).await
    }

    #[tokio::test]
    async fn every_item_is_written_once_in_batches_of_the_set_size() {
        let numbers = Numbers::default();
        let (ctx, _) = ctx();
        let report = go(&numbers, &ctx, 2, 3).await;

        assert_eq!(report.end, End::Done);
        assert_eq!(numbers.all_written(), (0..10).collect::<Vec<_>>());
        let sizes: Vec<usize> = numbers.written().iter().map(Vec::len).collect();
        assert_eq!(sizes, [3, 3, 3, 1]);
        // Pages of 4, 4 and 2: the short page is the last one read.
        assert_eq!(numbers.fetches.load(Ordering::SeqCst), 3);
        assert_eq!(report.totals.stats.get("written"), 10);
        // Published after each write, and the last one is the final count.
        assert_eq!(ctx.last_progress(), Some(report.totals.stats.clone()));
    }

    #[tokio::test]
    async fn the_next_page_is_read_when_only_the_read_ahead_is_left_to_start() {
        for (read_ahead, expected) in [(0, [0, 10, 20]), (3, [0, 7, 17])] {
            let numbers = Numbers {
                items: 20,
                page: 10,
                read_ahead,
                ..Numbers::default()
            };
            let (ctx, _) = ctx();
            let report = go(&numbers, &ctx, 1, 4).await;

            assert_eq!(report.end, End::Done);
            assert_eq!(numbers.all_written(), (0..20).collect::<Vec<_>>());
            assert_eq!(
                *numbers.started_at_fetch.lock().unwrap(),
                expected,
                "read ahead {read_ahead}"
            );
        }
    }

    #[tokio::test]
    async fn a_full_last_page_is_followed_by_one_empty_read() {
        let numbers = Numbers {
            items: 8,
            ..Numbers::default()
        };
        let (ctx, _) = ctx();
        let report = go(&numbers, &ctx, 3, 100).await;

        assert_eq!(report.end, End::Done);
        assert_eq!(numbers.written().len(), 1);
        assert_eq!(numbers.all_written(), (0..8).collect::<Vec<_>>());
        assert_eq!(numbers.fetches.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn no_more_items_than_the_concurrency_are_in_flight() {
        for concurrency in [1, 3, 8] {
            let numbers = Numbers {
                items: 40,
                page: 6,
                ..Numbers::default()
            };
            let (ctx, _) = ctx();
            let report = go(&numbers, &ctx, concurrency, 5).await;

            assert_eq!(report.end, End::Done);
            assert_eq!(numbers.all_written(), (0..40).collect::<Vec<_>>());
            assert_eq!(
                numbers.most_in_flight.load(Ordering::SeqCst),
                concurrency,
                "concurrency {concurrency}"
            );
        }
    }

    #[tokio::test]
    async fn no_more_batches_than_the_writers_are_written_at_once() {
        for writers in [1, 2, 5] {
            let numbers = Numbers {
                items: 30,
                ..Numbers::default()
            };
            let (ctx, _) = ctx();
            let settings = Settings {
                concurrency: 6,
                batch: 1,
                writers,
            };
            let report = go_with(&numbers, &ctx, settings).await;

            assert_eq!(report.end, End::Done);
            assert_eq!(numbers.all_written(), (0..30).collect::<Vec<_>>());
            assert_eq!(report.totals.stats.get("written"), 30);
            assert_eq!(
                numbers.most_writes_in_flight.load(Ordering::SeqCst),
                writers,
                "writers {writers}"
            );
        }
    }

    #[tokio::test]
    async fn a_cancel_mid_page_starts_nothing_more_and_writes_what_was_done() {
        let (ctx, token) = ctx();
        let numbers = Numbers {
            page: 10,
            cancel_at: Some((3, token)),
            ..Numbers::default()
        };
        let report = go(&numbers, &ctx, 1, 100).await;

        assert_eq!(report.end, End::Cancelled);
        assert_eq!(*numbers.started.lock().unwrap(), [0, 1, 2, 3]);
        assert_eq!(numbers.written(), [vec![0, 1, 2, 3]]);
        assert_eq!(numbers.fetches.load(Ordering::SeqCst), 1);
        assert_eq!(report.totals.stats.get("written"), 4);
    }

    #[tokio::test]
    async fn a_cancel_once_everything_was_started_is_not_a_cancelled_run() {
        let (ctx, token) = ctx();
        let numbers = Numbers {
            page: 20,
            cancel_at: Some((9, token)),
            ..Numbers::default()
        };
        let report = go(&numbers, &ctx, 1, 100).await;

        assert_eq!(report.end, End::Done);
        assert_eq!(numbers.all_written(), (0..10).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_streak_of_failures_halts_the_run_and_a_success_resets_it() {
        let numbers = Numbers {
            // 0 1 fail, 2 succeeds, 3 4 5 fail: the third failure in a row is item 5.
            fails: |n| n != 2,
            streak_limit: Some((3, Halt::Now)),
            ..Numbers::default()
        };
        let (ctx, _) = ctx();
        let report = go(&numbers, &ctx, 1, 4).await;

        assert_eq!(report.end, End::Halted("3 in a row, the last 5".to_owned()));
        assert_eq!(numbers.all_written(), [0, 1, 2, 3, 4, 5]);
        assert_eq!(report.totals.stats.get("failed"), 5);
        assert_eq!(report.totals.last_error.as_deref(), Some("item 5 failed"));
    }

    #[tokio::test]
    async fn halting_now_drops_the_items_in_flight_and_draining_lets_them_finish() {
        // The first of the four items in flight to finish fails and halts the run.
        for (halt, written) in [(Halt::Now as MakeHalt, 1), (Halt::Drain, 4)] {
            let numbers = Numbers {
                fails: |_| true,
                streak_limit: Some((1, halt)),
                ..Numbers::default()
            };
            let (ctx, _) = ctx();
            let report = go(&numbers, &ctx, 4, 100).await;

            assert!(matches!(report.end, End::Halted(_)), "{:?}", report.end);
            assert_eq!(numbers.all_written().len(), written);
            // The second page was read while the first was in flight, and left alone.
            assert!(numbers.started.lock().unwrap().iter().all(|n| *n < 4));
        }
    }

    #[tokio::test]
    async fn an_abort_writes_nothing_that_was_not_handed_to_the_writer() {
        let numbers = Numbers {
            abort_at: Some(5),
            ..Numbers::default()
        };
        let (ctx, _) = ctx();
        let report = go(&numbers, &ctx, 1, 3).await;

        assert_eq!(report.end, End::Halted("item 5 aborts".to_owned()));
        // 0–2 went to the writer as a full batch; 3 and 4 waited for a batch of three.
        assert_eq!(numbers.written(), [vec![0, 1, 2]]);
        assert_eq!(report.totals.stats.get("written"), 3);
    }

    #[tokio::test]
    async fn a_page_that_cannot_be_read_ends_the_run_after_writing_the_rest() {
        let numbers = Numbers {
            fail_fetch_after: Some(3),
            ..Numbers::default()
        };
        let (ctx, _) = ctx();
        let report = go(&numbers, &ctx, 2, 100).await;

        assert_eq!(
            report.end,
            End::Halted("cannot read after Some(3)".to_owned())
        );
        assert_eq!(numbers.written().len(), 1);
        assert_eq!(numbers.all_written(), [0, 1, 2, 3]);
    }

    #[tokio::test]
    async fn a_batch_that_cannot_be_written_ends_the_run_without_its_counts() {
        let numbers = Numbers {
            fail_write: true,
            ..Numbers::default()
        };
        let (ctx, _) = ctx();
        let report = go(&numbers, &ctx, 2, 2).await;

        assert_eq!(report.end, End::Halted("cannot write".to_owned()));
        assert!(numbers.written().is_empty());
        assert_eq!(report.totals.stats.get("written"), 0);
        assert_eq!(ctx.last_progress(), None);
    }

    #[tokio::test]
    async fn reasons_are_tallied_with_their_first_examples_and_the_limit_is_published() {
        let numbers = Numbers {
            fails: |n| n % 5 == 0,
            ..Numbers::default()
        };
        let (ctx, _) = ctx();
        let report = go(&numbers, &ctx, 1, 3).await;

        assert_eq!(report.end, End::Done);
        let reasons: Vec<(&str, i64, Vec<u32>)> = report
            .totals
            .reasons
            .iter()
            .map(|(reason, count)| (*reason, count.items, count.examples.clone()))
            .collect();
        assert_eq!(
            reasons,
            [("failed", 2, vec![0, 5]), ("odd", 4, vec![1, 3])],
            "items 1, 3, 7 and 9 are odd; 5 failed"
        );
        assert_eq!(
            serde_json::to_string(&report.totals.stats).unwrap(),
            r#"{"written":10,"failed":2,"concurrency_limit":7}"#
        );
    }

    #[test]
    fn a_harsher_halt_replaces_the_reason_and_a_milder_one_does_not() {
        let control = Control::default();
        assert!(!control.is_halting());
        control.halt(Halt::Drain("first"));
        control.halt(Halt::Drain("second"));
        assert!(control.is_halting());
        control.halt(Halt::Abort("abort"));
        control.halt(Halt::Now("now"));
        assert_eq!(control.take(), Some(Halt::Abort("abort")));
    }

    #[test]
    fn pages_of_a_keyset_scan_continue_only_when_full() {
        let full = Page::keyset(vec![1, 2, 3], 3, |n| *n * 10);
        assert_eq!(full.next, Some(30));
        let short = Page::keyset(vec![1, 2], 3, |n| *n * 10);
        assert_eq!(short.next, None);
        assert_eq!(full.whole().items, [vec![1, 2, 3]]);
        let page = Page::keyset(vec![1, 2, 3, 4, 5], 5, |n| *n);
        assert_eq!(page.chunks(2).items, [vec![1, 2], vec![3, 4], vec![5]]);
        assert_eq!(
            Page::keyset(vec![1, 2], 5, |n| *n).chunks(2).items,
            [vec![1, 2]]
        );
        assert!(Page::<u8, u8>::keyset(Vec::new(), 3, |n| *n)
            .chunks(2)
            .items
            .is_empty());
        assert!(Page::<u8, u8>::keyset(Vec::new(), 3, |n| *n)
            .whole()
            .items
            .is_empty());
    }

    #[tokio::test]
    async fn the_readme_example_job_runs() {
        use crate::Job;
        let job = crate::readme_example::ExpireSessions {
            sessions: Mutex::new((1..=250).map(|id| (id, i64::from(id % 3 == 0))).collect()),
            now: 0,
        };
        let (ctx, _) = ctx();
        let stats = job.run(&ctx).await.unwrap();
        assert_eq!(stats.summary(&[]), "167 expired, 83 kept, 250 considered");
        assert_eq!(job.sessions.lock().unwrap().len(), 83);
    }

    #[test]
    fn the_readme_quotes_the_example_job_verbatim() {
        let readme = include_str!("../../../README.md");
        let example = include_str!("../examples/expire_sessions.rs");
        assert!(
            readme.contains(&format!("```rust\n{example}```")),
            "README.md's \"Adding a job\" must quote crates/jobs-core/examples/expire_sessions.rs as it is"
        );
    }
}
