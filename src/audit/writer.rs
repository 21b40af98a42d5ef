//! The audit writer: producers enqueue records on a bounded channel; one writer thread drains
//! everything queued, seals it into the chain and commits it with one write (and one fsync when
//! configured) per batch — group commit — then acknowledges each producer.
//!
//! Spec §8: a record that cannot be written is never silently dropped. Every record ends up
//! counted exactly once, in `fapi_guard_audit_records_total` (written) or
//! `fapi_guard_audit_failures_total` (refused at the queue, or its batch failed).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc::error::{SendTimeoutError, TrySendError};
use tokio::sync::{mpsc, oneshot};

use super::AuditError;
use super::chain::ChainState;
use super::config::{AuditSettings, Durability};
use super::record::AuditRecord;
use super::sink::Sink;
use crate::clock::Clock;
use crate::metrics::Metrics;

/// Records per batch at most: bounds the write size and how long the first producer waits.
const MAX_BATCH: usize = 1024;

/// Handle to the audit log. Cheap to clone: share one per process.
#[derive(Clone, Debug)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    metrics: Arc<Metrics>,
    clock: Clock,
    durability: Durability,
    enqueue_timeout: Duration,
    commit_timeout: Duration,
    stats: Arc<Stats>,
}

#[derive(Debug, Default)]
struct Stats {
    batches: AtomicU64,
    /// Last time (Unix µs) a producer-side failure was logged: at most one line per second.
    last_failure_log: AtomicI64,
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
    /// Starts the writer thread. Call inside a tokio runtime with the time driver (the handle's
    /// methods use tokio timers). The file is opened (and its chain resumed) on the writer
    /// thread; if that fails, records fail — counted, logged — until the sink works again.
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
        let (tx, rx) = mpsc::channel(settings.queue_capacity);
        let stats = Arc::new(Stats::default());
        let mut writer = Writer {
            sink: Sink::new(&settings.sink, settings.fsync),
            chain: None,
            clock: clock.clone(),
            metrics: metrics.clone(),
            stats: stats.clone(),
            buf: Vec::with_capacity(64 * 1024),
        };
        std::thread::Builder::new()
            .name("fapi-guard-audit".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| AuditError::Start(e.to_string()))?;
        Ok(AuditLog {
            tx,
            metrics,
            clock,
            durability: settings.durability,
            enqueue_timeout: settings.enqueue_timeout,
            commit_timeout: settings.commit_timeout,
            stats,
        })
    }

    /// Appends `rec` and resolves once its batch was handed to the kernel (and fsynced when
    /// configured): what `durability: before_forward` awaits before forwarding (spec §8). Never
    /// waits longer than the enqueue plus commit timeouts.
    ///
    /// On `Err(Timeout)` the record is still queued: it will be written or counted as failed by
    /// the writer, so the caller must not count it again.
    pub async fn record(&self, rec: AuditRecord) -> Result<(), AuditError> {
        let (ack, done) = oneshot::channel();
        self.enqueue(Msg::Record(Box::new(rec), Some(ack))).await?;
        match tokio::time::timeout(self.commit_timeout, done).await {
            Ok(Ok(result)) => result,
            // The writer thread is gone without answering (it panicked): the record is lost.
            Ok(Err(_)) => Err(self.refused(AuditError::Closed)),
            Err(_) => Err(AuditError::Timeout(self.commit_timeout)),
        }
    }

    /// Enqueues `rec` without waiting (outcomes, `durability: after_response`). A full queue or a
    /// stopped writer counts the record as failed and logs; it never blocks the caller.
    pub fn record_detached(&self, rec: AuditRecord) {
        match self.tx.try_send(Msg::Record(Box::new(rec), None)) {
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
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Reopen(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Writes everything queued so far, closes the sink and stops the writer. Records sent by
    /// other clones afterwards fail with `Closed` (counted). Bound it with the drain deadline.
    pub async fn shutdown(self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(ack)).await.is_ok() {
            let _ = done.await;
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

    async fn enqueue(&self, msg: Msg) -> Result<(), AuditError> {
        let err = match self.tx.try_send(msg) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Closed(_)) => AuditError::Closed,
            // Full: wait a little for room; the writer is behind, not necessarily broken.
            Err(TrySendError::Full(msg)) => {
                match self.tx.send_timeout(msg, self.enqueue_timeout).await {
                    Ok(()) => return Ok(()),
                    Err(SendTimeoutError::Timeout(_)) => AuditError::QueueFull,
                    Err(SendTimeoutError::Closed(_)) => AuditError::Closed,
                }
            }
        };
        Err(self.refused(err))
    }

    /// Counts a record that never reached the writer, and logs at most once per second.
    fn refused(&self, err: AuditError) -> AuditError {
        self.metrics.audit_failed(1);
        let now = self.clock.now_micros();
        let last = self.stats.last_failure_log.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1_000_000
            && self
                .stats
                .last_failure_log
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::error!(error = %err, "audit record not written");
        }
        err
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
        // Open early so a broken sink or a corrupt log shows in the logs at startup.
        if let Err(e) = self.open() {
            tracing::error!(error = %e, "audit sink unavailable; records fail until it recovers");
        }
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
            self.commit(&mut batch);
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
                self.commit(batch);
            }
        }
        self.commit(batch);
    }

    fn open(&mut self) -> Result<(), AuditError> {
        if let Some(state) = self.sink.open(self.chain.is_some())? {
            self.chain = Some(state);
        }
        Ok(())
    }

    /// Seals and writes one batch, then acknowledges every producer in it.
    fn commit(&mut self, batch: &mut Vec<(Box<AuditRecord>, Option<Ack>)>) {
        if batch.is_empty() {
            return;
        }
        if let Err(e) = self.open() {
            return self.fail(batch.drain(..), e);
        }
        // Always set here: the first successful open yields a state.
        let Some(chain) = self.chain.as_mut() else {
            return self.fail(batch.drain(..), AuditError::Sink("no chain state".into()));
        };
        let before = chain.clone();
        self.buf.clear();
        let mut sealed = Vec::with_capacity(batch.len());
        let mut unsealable = Vec::new();
        for (rec, ack) in batch.drain(..) {
            match chain.seal_into(&rec, self.clock.now_micros(), &mut self.buf) {
                Ok(()) => sealed.push(ack),
                Err(e) => unsealable.push((ack, AuditError::Serialize(e.to_string()))),
            }
        }
        for (ack, e) in unsealable {
            self.fail_one(ack, e);
        }
        if sealed.is_empty() {
            return;
        }
        match self.sink.write_batch(&self.buf, before.next_seq) {
            Ok(()) => {
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.metrics.audit_written(sealed.len() as u64);
                for ack in sealed.into_iter().flatten() {
                    let _ = ack.send(Ok(()));
                }
            }
            Err(e) => {
                // Roll the chain back: those seqs were never durably written, so the next
                // batch reuses them and the file stays verifiable.
                self.chain = Some(before);
                tracing::error!(error = %e, records = sealed.len(), "audit batch not written");
                self.metrics.audit_failed(sealed.len() as u64);
                for ack in sealed.into_iter().flatten() {
                    let _ = ack.send(Err(e.clone()));
                }
            }
        }
    }

    /// Counts first, then answers: a producer that sees `Err` also sees it counted.
    fn fail(
        &self,
        records: impl ExactSizeIterator<Item = (Box<AuditRecord>, Option<Ack>)>,
        e: AuditError,
    ) {
        tracing::error!(error = %e, records = records.len(), "audit batch not written");
        self.metrics.audit_failed(records.len() as u64);
        for (_, ack) in records {
            if let Some(ack) = ack {
                let _ = ack.send(Err(e.clone()));
            }
        }
    }

    fn fail_one(&self, ack: Option<Ack>, e: AuditError) {
        tracing::error!(error = %e, "audit record not written");
        self.metrics.audit_failed(1);
        if let Some(ack) = ack {
            let _ = ack.send(Err(e));
        }
    }
}
