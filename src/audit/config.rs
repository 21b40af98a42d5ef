//! The `audit:` section of the deployment config (spec §4), parsed then compiled once into
//! [`AuditSettings`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Default `rotate_bytes`: 100 MiB.
pub const DEFAULT_ROTATE_BYTES: u64 = 100 * 1024 * 1024;
/// Default `queue_capacity`: records waiting for the writer before producers are refused.
pub const DEFAULT_QUEUE_CAPACITY: usize = 8192;
const MAX_QUEUE_CAPACITY: usize = 1 << 20;

/// Raw `audit:` section, exactly as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    #[serde(default)]
    pub sink: SinkKind,
    /// Required for `sink: file`; relative to the config file's directory. Ignored for stdout.
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub durability: Durability,
    #[serde(default)]
    pub fsync: bool,
    /// Rotate the file once it holds this many bytes; 0 never rotates (external logrotate).
    #[serde(default = "default_rotate_bytes")]
    pub rotate_bytes: u64,
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    #[default]
    Stdout,
    File,
}

/// When the proxy waits for the audit record (spec §4, §8). The writer itself treats both the
/// same; the proxy reads this to decide whether to await `AuditLog::record` before forwarding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// The decision record is committed before the request is forwarded; if it cannot be
    /// written the request is refused with 503.
    #[default]
    BeforeForward,
    /// One record after the response; never delays or refuses the request.
    AfterResponse,
}

/// Compiled settings: what [`super::AuditLog::start`] takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    pub sink: SinkSettings,
    pub durability: Durability,
    /// fsync after every batch (ignored for stdout, which may be a pipe).
    pub fsync: bool,
    pub queue_capacity: usize,
    /// How long `record()` waits for room in a full queue before failing.
    pub enqueue_timeout: Duration,
    /// How long `record()` waits for its batch to be committed before failing. Bounds the hot
    /// path when the disk hangs (a stuck NFS mount, say).
    pub commit_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSettings {
    Stdout,
    File {
        path: PathBuf,
        /// `None`: never rotate.
        rotate_bytes: Option<u64>,
    },
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            sink: SinkKind::Stdout,
            path: None,
            durability: Durability::BeforeForward,
            fsync: false,
            rotate_bytes: DEFAULT_ROTATE_BYTES,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
        }
    }
}

impl AuditConfig {
    /// Checks the section and resolves `path` against `base_dir` (the config file's directory).
    pub fn compile(&self, base_dir: &Path) -> Result<AuditSettings, String> {
        if !(1..=MAX_QUEUE_CAPACITY).contains(&self.queue_capacity) {
            return Err(format!(
                "audit.queue_capacity: must be between 1 and {MAX_QUEUE_CAPACITY}, got {}",
                self.queue_capacity
            ));
        }
        let sink = match self.sink {
            SinkKind::Stdout => SinkSettings::Stdout,
            SinkKind::File => {
                let path = self
                    .path
                    .as_deref()
                    .ok_or("audit.path: required when sink is file")?;
                if path.as_os_str().is_empty() {
                    return Err("audit.path: must not be empty".into());
                }
                if path.file_name().is_none() {
                    return Err(format!(
                        "audit.path: {} does not name a file",
                        path.display()
                    ));
                }
                SinkSettings::File {
                    path: base_dir.join(path),
                    rotate_bytes: (self.rotate_bytes > 0).then_some(self.rotate_bytes),
                }
            }
        };
        Ok(AuditSettings {
            sink,
            durability: self.durability,
            fsync: self.fsync,
            queue_capacity: self.queue_capacity,
            ..AuditSettings::stdout()
        })
    }
}

impl AuditSettings {
    /// Defaults with the stdout sink.
    pub fn stdout() -> Self {
        Self {
            sink: SinkSettings::Stdout,
            durability: Durability::BeforeForward,
            fsync: false,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            enqueue_timeout: Duration::from_millis(100),
            commit_timeout: Duration::from_secs(5),
        }
    }

    /// Defaults with a file sink at `path` (already resolved).
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            sink: SinkSettings::File {
                path: path.into(),
                rotate_bytes: Some(DEFAULT_ROTATE_BYTES),
            },
            ..Self::stdout()
        }
    }
}

fn default_rotate_bytes() -> u64 {
    DEFAULT_ROTATE_BYTES
}

fn default_queue_capacity() -> usize {
    DEFAULT_QUEUE_CAPACITY
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(yaml: &str) -> Result<AuditSettings, String> {
        let raw: AuditConfig = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        raw.compile(Path::new("/etc/fapi-guard"))
    }

    #[test]
    fn compiles_valid_sections() {
        let cases = [
            (
                "empty section is stdout defaults",
                "{}",
                AuditSettings::stdout(),
            ),
            (
                "spec §4 example: path ignored for stdout",
                "sink: stdout\npath: audit/audit.jsonl\ndurability: before_forward\nfsync: false",
                AuditSettings::stdout(),
            ),
            (
                "file relative to config dir",
                "sink: file\npath: audit/audit.jsonl",
                AuditSettings::file("/etc/fapi-guard/audit/audit.jsonl"),
            ),
            (
                "absolute path kept, every knob set",
                "sink: file\npath: /var/log/a.jsonl\ndurability: after_response\nfsync: true\nrotate_bytes: 0\nqueue_capacity: 16",
                AuditSettings {
                    sink: SinkSettings::File {
                        path: "/var/log/a.jsonl".into(),
                        rotate_bytes: None,
                    },
                    durability: Durability::AfterResponse,
                    fsync: true,
                    queue_capacity: 16,
                    ..AuditSettings::stdout()
                },
            ),
        ];
        for (name, yaml, want) in cases {
            assert_eq!(compile(yaml), Ok(want), "{name}");
        }
    }

    #[test]
    fn rejects_invalid_sections() {
        let cases = [
            (
                "file without path",
                "sink: file",
                "audit.path: required when sink is file",
            ),
            (
                "empty path",
                "sink: file\npath: ''",
                "audit.path: must not be empty",
            ),
            (
                "path is a directory",
                "sink: file\npath: /var/log/..",
                "does not name a file",
            ),
            (
                "zero queue",
                "queue_capacity: 0",
                "audit.queue_capacity: must be between 1",
            ),
            ("unknown key", "sinks: file", "unknown field `sinks`"),
            ("unknown sink", "sink: syslog", "unknown variant `syslog`"),
            (
                "unknown durability",
                "durability: never",
                "unknown variant `never`",
            ),
        ];
        for (name, yaml, want) in cases {
            let err = compile(yaml).expect_err("should fail");
            assert!(err.contains(want), "{name}: {err}");
        }
    }
}
