//! The audit writer, in one of two modes chosen from the settings:
//!
//! - **Inline** (a file sink without `fsync`, the default): the request's own thread seals its
//!   record into the chain and hands the line to the kernel with one `write(2)` under a mutex,
//!   so `before_forward` costs no thread hand-off and no wake-up. Records that nobody waits for
//!   (outcomes, revocations, `after_response`) are kept in a bounded pending list and written
//!   with the next waited-for record, or by a flusher thread within [`FLUSH_EVERY`]. A line the
//!   kernel accepted survives `kill -9`; what is still pending does not, exactly as a queued
//!   record did not before (the spec guarantees the *decision* record under `before_forward`).
//! - **Writer thread** (`fsync: true`, or stdout, whose reader may block): producers enqueue on a
//!   bounded channel; one thread drains everything queued, seals it and commits it with one
//!   write (and one fsync) per batch — group commit — then acknowledges each producer.
//!
//! Spec §8: a record that cannot be written is never silently dropped. Every record ends up
//! counted exactly once, in `fapi_guard_audit_records_total` (written) or
//! `fapi_guard_audit_failures_total` (refused at the queue, or its batch failed).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::mpsc::error::{SendTimeoutError, TrySendError};
use tokio::sync::{mpsc, oneshot};

use super::AuditError;
use super::chain::ChainState;
use super::config::{AuditSettings, Durability, SinkSettings};
use super::record::AuditRecord;
use super::sink::Sink;
use crate::clock::Clock;
use crate::metrics::Metrics;

/// Records per batch at most: bounds the write size and how long the first producer waits.
const MAX_BATCH: usize = 1024;

/// Inline mode: how long a record nobody waits for may stay pending before the flusher writes it.
pub const FLUSH_EVERY: Duration = Duration::from_millis(10);

/// Handle to the audit log. Cheap to clone: share one per process.
#[derive(Clone, Debug)]
pub struct AuditLog {
    backend: Backend,
    metrics: Arc<Metrics>,
    clock: Clock,
    durability: Durability,
    enqueue_timeout: Duration,
    commit_timeout: Duration,
    stats: Arc<Stats>,
}

#[derive(Clone, Debug)]
enum Backend {
    Thread(mpsc::Sender<Msg>),
    Inline(Arc<Inline>),
}

#[derive(Debug, Default)]
struct Stats {
    batches: AtomicU64,
    /// Last time (Unix µs) a producer-side failure was logged: at most one line per second.
    last_failure_log: AtomicI64,
    /// The same for failed writes.
    last_batch_failure_log: AtomicI64,
}

type Ack = oneshot::Sender<Result<(), AuditError>>;

#[derive(Debug)]
enum Msg {
    /// Boxed: keeps queue slots small (a record is ~700 bytes).
    Record(Box<AuditRecord>, Option<Ack>),
    Reopen(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

impl AuditLog {
    /// Starts the writer (see the module docs for the two modes). Call inside a tokio runtime
    /// with the time driver (the handle's methods use tokio timers). If the sink cannot be
    /// opened, records fail — counted, logged — until it works again.
    pub fn start(
        settings: AuditSettings,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> Result<AuditLog, AuditError> {
        if settings.queue_capacity == 0 {
            return Err(AuditError::Start(
                "queue_capacity must be at least 1".into(),
            ));
        }
        let stats = Arc::new(Stats::default());
        let mut writer = Writer {
            sink: Sink::new(&settings.sink, settings.fsync),
            chain: None,
            clock: clock.clone(),
            metrics: metrics.clone(),
            stats: stats.clone(),
            buf: Vec::with_capacity(64 * 1024),
        };
        let inline = !settings.fsync && matches!(settings.sink, SinkSettings::File { .. });
        let backend = if inline {
            writer.open_or_log();
            Backend::Inline(Inline::start(writer, settings.queue_capacity)?)
        } else {
            let (tx, rx) = mpsc::channel(settings.queue_capacity);
            std::thread::Builder::new()
                .name("fapi-guard-audit".into())
                .spawn(move || writer.run(rx))
                .map_err(|e| AuditError::Start(e.to_string()))?;
            Backend::Thread(tx)
        };
        Ok(AuditLog {
            backend,
            metrics,
            clock,
            durability: settings.durability,
            enqueue_timeout: settings.enqueue_timeout,
            commit_timeout: settings.commit_timeout,
            stats,
        })
    }

    /// Appends `rec` and resolves once its line was handed to the kernel (and fsynced when
    /// configured): what `durability: before_forward` awaits before forwarding (spec §8). With
    /// the writer thread it never waits longer than the enqueue plus commit timeouts.
    ///
    /// On `Err(Timeout)` the record is still queued: it will be written or counted as failed by
    /// the writer, so the caller must not count it again.
    pub async fn record(&self, rec: AuditRecord) -> Result<(), AuditError> {
        let tx = match &self.backend {
            Backend::Inline(inline) => return inline.record(rec, || self.refused_closed()),
            Backend::Thread(tx) => tx,
        };
        let (ack, done) = oneshot::channel();
        self.enqueue(tx, Msg::Record(Box::new(rec), Some(ack)))
            .await?;
        match tokio::time::timeout(self.commit_timeout, done).await {
            Ok(Ok(result)) => result,
            // The writer thread is gone without answering (it panicked): the record is lost.
            Ok(Err(_)) => Err(self.refused(AuditError::Closed)),
            Err(_) => Err(AuditError::Timeout(self.commit_timeout)),
        }
    }

    /// Appends `rec` without waiting (outcomes, `durability: after_response`). A full queue or a
    /// stopped writer counts the record as failed and logs; it never blocks the caller on I/O
    /// it does not own (inline mode writes the pending list itself once it is full).
    pub fn record_detached(&self, rec: AuditRecord) {
        let tx = match &self.backend {
            Backend::Inline(inline) => {
                if inline.record_detached(rec).is_err() {
                    self.refused(AuditError::Closed);
                }
                return;
            }
            Backend::Thread(tx) => tx,
        };
        match tx.try_send(Msg::Record(Box::new(rec), None)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.refused(AuditError::QueueFull);
            }
            Err(TrySendError::Closed(_)) => {
                self.refused(AuditError::Closed);
            }
        }
    }

    /// Closes and reopens the file at the same path on the next batch (SIGHUP, after an external
    /// logrotate moved it away). The chain continues in the new file.
    pub async fn reopen(&self) {
        match &self.backend {
            Backend::Inline(inline) => lock(&inline.writer).writer.sink.reopen(),
            Backend::Thread(tx) => {
                let (ack, done) = oneshot::channel();
                if tx.send(Msg::Reopen(ack)).await.is_ok() {
                    let _ = done.await;
                }
            }
        }
    }

    /// Writes everything queued so far, closes the sink and stops the writer. Records sent by
    /// other clones afterwards fail with `Closed` (counted). Bound it with the drain deadline.
    pub async fn shutdown(self) {
        match &self.backend {
            Backend::Inline(inline) => inline.shutdown(),
            Backend::Thread(tx) => {
                let (ack, done) = oneshot::channel();
                if tx.send(Msg::Shutdown(ack)).await.is_ok() {
                    let _ = done.await;
                }
            }
        }
    }

    /// The configured durability, for the proxy to choose `record` or `record_detached`.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Batches committed so far (each one write, and one fsync when configured).
    pub fn committed_batches(&self) -> u64 {
        self.stats.batches.load(Ordering::Relaxed)
    }

    async fn enqueue(&self, tx: &mpsc::Sender<Msg>, msg: Msg) -> Result<(), AuditError> {
        let err = match tx.try_send(msg) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Closed(_)) => AuditError::Closed,
            // Full: wait a little for room; the writer is behind, not necessarily broken.
            Err(TrySendError::Full(msg)) => {
                match tx.send_timeout(msg, self.enqueue_timeout).await {
                    Ok(()) => return Ok(()),
                    Err(SendTimeoutError::Timeout(_)) => AuditError::QueueFull,
                    Err(SendTimeoutError::Closed(_)) => AuditError::Closed,
                }
            }
        };
        Err(self.refused(err))
    }

    fn refused_closed(&self) -> AuditError {
        self.refused(AuditError::Closed)
    }

    /// Counts a record that never reached the writer, and logs at most once per second.
    fn refused(&self, err: AuditError) -> AuditError {
        self.metrics.audit_failed(1);
        if once_per_second(&self.stats.last_failure_log, &self.clock) {
            tracing::error!(error = %err, "audit record not written");
        }
        err
    }
}

/// Inline mode: the writer behind a mutex, written by whichever thread holds it, and the
/// records nobody waits for behind a second, short-held one, so that queueing an outcome never
/// waits for a write in progress. Lock order: `writer`, then `pending`.
struct Inline {
    writer: Mutex<InlineWriter>,
    pending: Mutex<Pending>,
    /// Detached records kept pending at most; a full list is written by the producer.
    capacity: usize,
}

struct InlineWriter {
    writer: Writer,
    /// The batch being committed (reused): pending records first (`false`), then at most one
    /// waited-for record (`true`).
    batch: Vec<(Box<AuditRecord>, bool)>,
}

struct Pending {
    /// Boxed when queued, so moving them into the batch (of boxes) copies pointers, not
    /// ~700-byte records, under the writer lock.
    #[allow(clippy::vec_box)]
    records: Vec<Box<AuditRecord>>,
    closed: bool,
}

impl std::fmt::Debug for Inline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inline")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// A panic while holding a lock leaves the chain state as it was before the failed batch (see
/// `Writer::commit`), and a pending list is valid at every step: take the state over.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inline {
    fn start(writer: Writer, capacity: usize) -> Result<Arc<Self>, AuditError> {
        let inline = Arc::new(Self {
            writer: Mutex::new(InlineWriter {
                writer,
                batch: Vec::with_capacity(capacity.min(MAX_BATCH)),
            }),
            pending: Mutex::new(Pending {
                records: Vec::with_capacity(capacity.min(MAX_BATCH)),
                closed: false,
            }),
            capacity,
        });
        let weak = Arc::downgrade(&inline);
        std::thread::Builder::new()
            .name("fapi-guard-audit-flush".into())
            .spawn(move || flush_loop(&weak))
            .map_err(|e| AuditError::Start(e.to_string()))?;
        Ok(inline)
    }

    /// Under the writer lock: moves the pending records into the batch. `close` refuses
    /// further records. Returns whether the log was already closed.
    fn take_pending(&self, w: &mut InlineWriter, close: bool) -> bool {
        let mut p = lock(&self.pending);
        let was_closed = p.closed;
        p.closed |= close;
        w.batch.extend(p.records.drain(..).map(|r| (r, false)));
        was_closed
    }

    fn record(
        &self,
        rec: AuditRecord,
        closed: impl FnOnce() -> AuditError,
    ) -> Result<(), AuditError> {
        let mut w = lock(&self.writer);
        if self.take_pending(&mut w, false) {
            drop(w);
            return Err(closed());
        }
        w.batch.push((Box::new(rec), true));
        let mut mine = Err(AuditError::Closed);
        w.commit(|waited, result| {
            if waited {
                mine = result;
            }
        });
        mine
    }

    fn record_detached(&self, rec: AuditRecord) -> Result<(), ()> {
        let full = {
            let mut p = lock(&self.pending);
            if p.closed {
                return Err(());
            }
            p.records.push(Box::new(rec));
            p.records.len() >= self.capacity
        };
        if full {
            self.flush();
        }
        Ok(())
    }

    /// Writes what is pending; false once the log is closed.
    fn flush(&self) -> bool {
        let mut w = lock(&self.writer);
        let closed = self.take_pending(&mut w, false);
        w.commit(|_, _| {});
        !closed
    }

    fn shutdown(&self) {
        let mut w = lock(&self.writer);
        self.take_pending(&mut w, true);
        w.commit(|_, _| {});
    }
}

impl InlineWriter {
    fn commit(&mut self, answer: impl FnMut(bool, Result<(), AuditError>)) {
        self.writer.commit(&mut self.batch, answer);
    }
}

/// Nothing stays pending: a log dropped without `shutdown` still writes what it holds.
impl Drop for Inline {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Writes pending records every [`FLUSH_EVERY`] until the log is shut down or dropped.
fn flush_loop(inline: &Weak<Inline>) {
    loop {
        std::thread::sleep(FLUSH_EVERY);
        match inline.upgrade() {
            Some(inline) if inline.flush() => {}
            _ => return,
        }
    }
}

/// State owned by the writer thread.
struct Writer {
    sink: Sink,
    /// `None` until the sink was opened once (then: where the next record goes).
    chain: Option<ChainState>,
    clock: Clock,
    metrics: Arc<Metrics>,
    stats: Arc<Stats>,
    buf: Vec<u8>,
}

impl Writer {
    fn run(&mut self, mut rx: mpsc::Receiver<Msg>) {
        self.open_or_log();
        let mut batch = Vec::with_capacity(MAX_BATCH);
        // `blocking_recv` is fine: this is a dedicated OS thread, not a runtime worker.
        while let Some(first) = rx.blocking_recv() {
            let mut control = None;
            match first {
                Msg::Record(rec, ack) => batch.push((rec, ack)),
                other => control = Some(other),
            }
            // Group commit: take whatever else is already queued.
            while control.is_none() && batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(Msg::Record(rec, ack)) => batch.push((rec, ack)),
                    Ok(other) => control = Some(other),
                    Err(_) => break,
                }
            }
            self.commit(&mut batch, answer);
            match control {
                None => {}
                Some(Msg::Reopen(done)) => {
                    self.sink.reopen();
                    let _ = done.send(());
                }
                Some(Msg::Shutdown(done)) => {
                    // Refuse new messages, then write what is already queued: nothing is lost.
                    rx.close();
                    self.drain(&mut rx, &mut batch);
                    let _ = done.send(());
                    return;
                }
                Some(Msg::Record(..)) => {}
            }
        }
    }

    fn drain(
        &mut self,
        rx: &mut mpsc::Receiver<Msg>,
        batch: &mut Vec<(Box<AuditRecord>, Option<Ack>)>,
    ) {
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Msg::Record(rec, ack) => batch.push((rec, ack)),
                Msg::Reopen(done) | Msg::Shutdown(done) => {
                    let _ = done.send(());
                }
            }
            if batch.len() >= MAX_BATCH {
                self.commit(batch, answer);
            }
        }
        self.commit(batch, answer);
    }

    fn open(&mut self) -> Result<(), AuditError> {
        if let Some(state) = self.sink.open(self.chain.is_some())? {
            self.chain = Some(state);
        }
        Ok(())
    }

    /// Opens early so a broken sink or a corrupt log shows in the logs at startup.
    fn open_or_log(&mut self) {
        if let Err(e) = self.open() {
            tracing::error!(error = %e, "audit sink unavailable; records fail until it recovers");
        }
    }

    /// Seals and writes one batch (emptying it), then answers every record in it: `answer`
    /// gets each record's reply handle and result, written or failed — counted first, so a
    /// producer that sees `Err` also sees it counted.
    fn commit<R>(
        &mut self,
        batch: &mut Vec<(Box<AuditRecord>, R)>,
        mut answer: impl FnMut(R, Result<(), AuditError>),
    ) {
        if batch.is_empty() {
            return;
        }
        if let Err(e) = self.open() {
            return self.fail(batch, e, answer);
        }
        // Always set here: the first successful open yields a state.
        let Some(chain) = self.chain.as_mut() else {
            let e = AuditError::Sink("no chain state".into());
            return self.fail(batch, e, answer);
        };
        let before = chain.clone();
        self.buf.clear();
        let mut sealed = Vec::with_capacity(batch.len());
        let mut unsealable = Vec::new();
        for (rec, reply) in batch.drain(..) {
            match chain.seal_into(&rec, self.clock.now_micros(), &mut self.buf) {
                Ok(()) => sealed.push(reply),
                Err(e) => unsealable.push((reply, AuditError::Serialize(e.to_string()))),
            }
        }
        for (reply, e) in unsealable {
            self.log_failure(&e.to_string(), 1, "audit record not written");
            self.metrics.audit_failed(1);
            answer(reply, Err(e));
        }
        if sealed.is_empty() {
            return;
        }
        match self.sink.write_batch(&self.buf, before.next_seq) {
            Ok(()) => {
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.metrics.audit_written(sealed.len() as u64);
                for reply in sealed {
                    answer(reply, Ok(()));
                }
            }
            Err(e) => {
                // Roll the chain back: those seqs were never durably written, so the next
                // batch reuses them and the file stays verifiable.
                self.chain = Some(before);
                self.log_failure(&e.to_string(), sealed.len(), "audit batch not written");
                self.metrics.audit_failed(sealed.len() as u64);
                for reply in sealed {
                    answer(reply, Err(e.clone()));
                }
            }
        }
    }

    fn fail<R>(
        &self,
        batch: &mut Vec<(Box<AuditRecord>, R)>,
        e: AuditError,
        mut answer: impl FnMut(R, Result<(), AuditError>),
    ) {
        self.log_failure(&e.to_string(), batch.len(), "audit batch not written");
        self.metrics.audit_failed(batch.len() as u64);
        for (_, reply) in batch.drain(..) {
            answer(reply, Err(e.clone()));
        }
    }
}

impl Writer {
    /// Logs a failed write at most once per second (inline mode fails once per request while a
    /// disk is full); every failed record is counted regardless.
    fn log_failure(&self, error: &str, records: usize, what: &'static str) {
        if once_per_second(&self.stats.last_batch_failure_log, &self.clock) {
            tracing::error!(error, records, "{what}");
        }
    }
}

/// True at most once per second per `last` (the Unix µs of the last `true`), across threads.
fn once_per_second(last: &AtomicI64, clock: &Clock) -> bool {
    let now = clock.now_micros();
    let seen = last.load(Ordering::Relaxed);
    now.saturating_sub(seen) >= 1_000_000
        && last
            .compare_exchange(seen, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// The writer thread's reply: wake the producer that waits, if any.
fn answer(ack: Option<Ack>, result: Result<(), AuditError>) {
    if let Some(ack) = ack {
        let _ = ack.send(result);
    }
}
