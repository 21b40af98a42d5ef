//! The audit trail of spec §8: append-only, hash-chained JSON Lines, one record per decision,
//! outcome, revocation, policy reload and issued Txn-Token.
//!
//! - [`record`]: what producers build ([`AuditRecord`], [`token_digest`]).
//! - [`chain`]: `seq`/`prev` and the genesis rule.
//! - [`AuditLog`]: the group-commit writer (`writer.rs`) over a stdout or file sink (`sink.rs`,
//!   with resume after a crash and size-based rotation).
//! - [`config`]: the `audit:` section of spec §4.
//! - [`verify`]: `fapi-guard audit verify`.
//! - [`report`]: `fapi-guard audit report`, the least-privilege report.
//!
//! Records never contain raw tokens, proofs, secrets or `Authorization` headers.

pub mod chain;
pub mod config;
pub mod record;
pub mod report;
mod sink;
pub mod verify;
mod writer;

use std::time::Duration;

pub use config::{AuditConfig, AuditSettings, Durability, SinkSettings};
pub use record::{
    Actor, AuditRecord, ConsentInfo, RecordKind, RevocationInfo, SignatureInfo, TokenInfo, Verdict,
    digest_prefix, token_digest,
};
pub use verify::{VerifyFailure, VerifySummary, run_cli, verify_files};
pub use writer::AuditLog;

/// Why a record was not written. Every one of these is counted in
/// `fapi_guard_audit_failures_total`; with `before_forward` the proxy answers 503 (spec §8).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    #[error("audit queue is full")]
    QueueFull,
    #[error("audit writer is stopped")]
    Closed,
    /// The record is still queued and may yet be written; it is counted by the writer.
    #[error("audit record not committed within {0:?}")]
    Timeout(Duration),
    #[error("audit sink failed: {0}")]
    Sink(String),
    #[error("audit record could not be serialized: {0}")]
    Serialize(String),
    #[error("audit writer could not start: {0}")]
    Start(String),
}

#[cfg(test)]
mod tests;
