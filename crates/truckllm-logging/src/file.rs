//! The file sink: JSON lines, request records in one file and audit records in another, each a
//! [`RotatingFile`]. A file is rotated when the next line would take it past its size limit or
//! when its first record is older than the age limit; a rotated file is renamed with the time
//! of its rotation (`requests.2026-11-25T19-37-43.123Z.jsonl`), so names sort by age and
//! [`rotated_files`] can find them for search. Retention deletes rotated request files beyond
//! a count and past an age, rotated audit files only past an age: traffic, however heavy (even
//! a flood of denied requests, each of which leaves an audit record), never pushes audit
//! records out. The two logs must be different files. Files are created readable by their
//! owner only (0600; rotation renames, so rotated files keep it). Writes and fsyncs run on the
//! blocking pool, never on a request's thread.
//!
//! Rotation and retention are written here rather than taken from `tracing-appender` (which
//! rotates by time only) or `logroller`, because search depends on the naming and the age of
//! a file is that of its first record.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use truckllm_config::schema::{FileSinkConfig, FsyncPolicy};

use crate::record::{LogRecord, timestamp};
use crate::sink::{Batching, LogSink, SinkError};

/// The time source, injectable so rotation by age can be tested without waiting.
pub type Now = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Where a file sink writes audit records: `audit_path`, or `audit.jsonl` beside `path`.
pub fn audit_path_of(config: &FileSinkConfig) -> PathBuf {
    match &config.audit_path {
        Some(p) => PathBuf::from(p),
        None => Path::new(&config.path).with_file_name("audit.jsonl"),
    }
}

/// A file sink for audit records only, in `audit_path` (its request log, never written by a
/// process that emits no request records, is never created).
pub fn audit_only(audit_path: &Path) -> FileSinkConfig {
    FileSinkConfig {
        audit_path: Some(audit_path.display().to_string()),
        ..FileSinkConfig::at(
            audit_path
                .with_extension("requests.jsonl")
                .display()
                .to_string(),
        )
    }
}

/// The system clock.
pub fn system_now() -> Now {
    Arc::new(SystemTime::now)
}

/// When a file is rotated and how long rotated files are kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rotation {
    pub max_bytes: u64,
    pub max_age: Duration,
    pub keep_files: usize,
    /// `None` keeps rotated files by count only.
    pub keep_age: Option<Duration>,
}

impl Rotation {
    /// The request log's rotation and retention.
    pub fn from_config(config: &FileSinkConfig) -> Self {
        Self {
            max_bytes: (config.max_size_mb * 1024.0 * 1024.0).max(1.0) as u64,
            max_age: Duration::try_from_secs_f64(config.max_age_hours.max(0.0) * 3600.0)
                .unwrap_or(Duration::MAX),
            keep_files: config.keep_files,
            keep_age: (config.keep_days > 0.0).then(|| {
                Duration::try_from_secs_f64(config.keep_days * 86_400.0).unwrap_or(Duration::MAX)
            }),
        }
    }

    /// The audit log's: rotated the same way, but its files are deleted by age only, never by
    /// count, so no volume of records can push audit records out (`keep_days: 0` keeps them).
    pub fn audit_from_config(config: &FileSinkConfig) -> Self {
        Self {
            keep_files: usize::MAX,
            ..Self::from_config(config)
        }
    }
}

/// Opens `path` for appending, creating it readable and writable by its owner only.
fn open_append(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// An append-only JSON lines file that rotates itself.
pub struct RotatingFile {
    path: PathBuf,
    rotation: Rotation,
    now: Now,
    file: File,
    size: u64,
    /// The time of the active file's first record; `None` while it is empty.
    first_at: Option<SystemTime>,
}

impl std::fmt::Debug for RotatingFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatingFile")
            .field("path", &self.path)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl RotatingFile {
    /// Opens (or creates) the active file, creating its directory, and applies retention.
    pub fn open(path: &Path, rotation: Rotation, now: Now) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        let first_at = if size > 0 {
            Some(first_record_time(path).unwrap_or_else(|| now()))
        } else {
            None
        };
        let opened = Self {
            path: path.to_owned(),
            rotation,
            now,
            file,
            size,
            first_at,
        };
        opened.apply_retention()?;
        Ok(opened)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends lines (each without its newline), rotating between lines as needed.
    pub fn append(&mut self, lines: &[Vec<u8>]) -> std::io::Result<()> {
        let mut pending: Vec<u8> = Vec::new();
        let mut pending_size = 0u64;
        for line in lines {
            let len = line.len() as u64 + 1;
            if self.should_rotate(pending_size, len) {
                self.write_out(&mut pending)?;
                pending_size = 0;
                self.rotate()?;
            }
            pending.extend_from_slice(line);
            pending.push(b'\n');
            pending_size += len;
        }
        self.write_out(&mut pending)
    }

    fn write_out(&mut self, pending: &mut Vec<u8>) -> std::io::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        self.file.write_all(pending)?;
        self.size += pending.len() as u64;
        if self.first_at.is_none() {
            self.first_at = Some((self.now)());
        }
        pending.clear();
        Ok(())
    }

    /// Whether a line of `adding` bytes needs a new file first, with `pending` bytes not yet
    /// written. An empty file takes any line, however long, so nothing is ever refused.
    fn should_rotate(&self, pending: u64, adding: u64) -> bool {
        let current = self.size + pending;
        current > 0 && (current + adding > self.rotation.max_bytes || self.too_old())
    }

    fn too_old(&self) -> bool {
        self.first_at.is_some_and(|first| {
            (self.now)()
                .duration_since(first)
                .is_ok_and(|age| age >= self.rotation.max_age)
        })
    }

    /// Rotates an idle file that has grown too old, and applies retention.
    pub fn rotate_if_old(&mut self) -> std::io::Result<()> {
        if self.size > 0 && self.too_old() {
            self.rotate()?;
        }
        self.apply_retention()
    }

    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.sync_data()?;
        let mut at = (self.now)();
        let target = loop {
            let candidate = rotated_name(&self.path, at);
            if !candidate.exists() {
                break candidate;
            }
            at += Duration::from_millis(1);
        };
        std::fs::rename(&self.path, &target)?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        self.first_at = None;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        self.apply_retention()
    }

    fn apply_retention(&self) -> std::io::Result<()> {
        let rotated = rotated_files(&self.path)?;
        let now = (self.now)();
        let excess = rotated.len().saturating_sub(self.rotation.keep_files);
        for (i, (at, path)) in rotated.iter().enumerate() {
            let expired = self
                .rotation
                .keep_age
                .is_some_and(|keep| now.duration_since(*at).is_ok_and(|age| age > keep));
            if i < excess || expired {
                std::fs::remove_file(path)?;
            }
        }
        Ok(())
    }
}

/// The time in a record's `ts` field, from the file's first line.
fn first_record_time(path: &Path) -> Option<SystemTime> {
    #[derive(serde::Deserialize)]
    struct Ts {
        ts: String,
    }
    let mut line = String::new();
    BufReader::new(File::open(path).ok()?.take(64 * 1024))
        .read_line(&mut line)
        .ok()?;
    let ts: Ts = serde_json::from_str(line.trim_end()).ok()?;
    humantime::parse_rfc3339(&ts.ts).ok()
}

fn split_name(path: &Path) -> (String, String) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem.to_owned(), ext.to_owned()),
        _ => (name, String::new()),
    }
}

/// `dir/requests.jsonl` rotated at `at` → `dir/requests.2026-11-25T19-37-43.123Z.jsonl`.
pub fn rotated_name(path: &Path, at: SystemTime) -> PathBuf {
    let (stem, ext) = split_name(path);
    let stamp = timestamp(at).replace(':', "-");
    let name = if ext.is_empty() {
        format!("{stem}.{stamp}")
    } else {
        format!("{stem}.{stamp}.{ext}")
    };
    path.with_file_name(name)
}

/// The rotated files of the log at `path`, oldest first, with their rotation times.
pub fn rotated_files(path: &Path) -> std::io::Result<Vec<(SystemTime, PathBuf)>> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let (stem, ext) = split_name(path);
    let prefix = format!("{stem}.");
    let suffix = if ext.is_empty() {
        String::new()
    } else {
        format!(".{ext}")
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(middle) = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(&suffix))
        else {
            continue;
        };
        if let Some(at) = parse_stamp(middle) {
            found.push((at, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// `2026-11-25T19-37-43.123Z` → the time.
fn parse_stamp(stamp: &str) -> Option<SystemTime> {
    let (date, time) = stamp.split_once('T')?;
    humantime::parse_rfc3339(&format!("{date}T{}", time.replace('-', ":"))).ok()
}

/// Whether two paths name the same file: compared absolute and without `.`/`..`, or by
/// identity when both exist (a symlink or hard link).
fn same_file(a: &Path, b: &Path) -> bool {
    let absolute = |p: &Path| std::path::absolute(p).ok().map(|p| normalize(&p));
    if absolute(a).is_some_and(|x| Some(x) == absolute(b)) {
        return true;
    }
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// `p` without `.` components and with each `..` taking off the component before it.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in p.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Request records to `path`, audit records to `audit_path`. Each file is opened when its
/// first record comes (a storage server, which writes only audit records, leaves no empty
/// request log); their directories are created up front, so a bad path fails at start.
pub struct FileSink {
    name: String,
    files: Arc<Mutex<Files>>,
    fsync: FsyncPolicy,
    check_every: Duration,
}

struct Files {
    requests: LazyFile,
    audit: LazyFile,
}

/// A rotating file opened on first use.
struct LazyFile {
    path: PathBuf,
    rotation: Rotation,
    now: Now,
    open: Option<RotatingFile>,
}

impl LazyFile {
    fn get(&mut self) -> std::io::Result<&mut RotatingFile> {
        match &mut self.open {
            Some(file) => Ok(file),
            slot @ None => Ok(slot.insert(RotatingFile::open(
                &self.path,
                self.rotation,
                Arc::clone(&self.now),
            )?)),
        }
    }
}

impl FileSink {
    pub fn open(config: &FileSinkConfig, now: Now) -> Result<Self, SinkError> {
        let rotation = Rotation::from_config(config);
        let path = PathBuf::from(&config.path);
        let audit_path = audit_path_of(config);
        if same_file(&path, &audit_path) {
            return Err(SinkError::io(
                format!(
                    "the file sink's request log and audit log are both {}; give `audit_path` another file",
                    path.display()
                ),
                std::io::Error::from(std::io::ErrorKind::InvalidInput),
            ));
        }
        for p in [&path, &audit_path] {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    SinkError::io(format!("cannot create log directory {}", dir.display()), e)
                })?;
            }
        }
        let lazy = |path: PathBuf, rotation: Rotation| LazyFile {
            path,
            rotation,
            now: Arc::clone(&now),
            open: None,
        };
        Ok(Self {
            name: format!("file:{}", path.display()),
            files: Arc::new(Mutex::new(Files {
                requests: lazy(path, rotation),
                audit: lazy(audit_path, Rotation::audit_from_config(config)),
            })),
            fsync: config.fsync,
            check_every: (rotation.max_age / 4)
                .clamp(Duration::from_millis(100), Duration::from_secs(10)),
        })
    }

    /// Runs `work` on the files on the blocking pool.
    async fn with_files(
        &self,
        work: impl FnOnce(&mut Files) -> std::io::Result<()> + Send + 'static,
    ) -> Result<(), SinkError> {
        let files = Arc::clone(&self.files);
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || {
            let mut files = files.lock().unwrap_or_else(|p| p.into_inner());
            work(&mut files)
        })
        .await
        .map_err(|e| SinkError::io(name.clone(), std::io::Error::other(e)))?
        .map_err(|e| SinkError::io(name, e))
    }
}

#[async_trait]
impl LogSink for FileSink {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn kind(&self) -> &'static str {
        "file"
    }

    fn batching(&self) -> Batching {
        Batching {
            max_records: 1024,
            linger: Duration::ZERO,
        }
    }

    async fn write(
        &mut self,
        batch: &[LogRecord],
        _stop: &CancellationToken,
    ) -> Result<(), SinkError> {
        let (audit, requests): (Vec<&LogRecord>, Vec<&LogRecord>) =
            batch.iter().partition(|r| r.is_audit());
        let requests: Vec<Vec<u8>> = requests.into_iter().map(LogRecord::to_json).collect();
        let audit: Vec<Vec<u8>> = audit.into_iter().map(LogRecord::to_json).collect();
        let fsync = self.fsync == FsyncPolicy::Batch;
        self.with_files(move |files| {
            for (file, lines) in [(&mut files.requests, requests), (&mut files.audit, audit)] {
                if lines.is_empty() {
                    continue;
                }
                let file = file.get()?;
                file.append(&lines)?;
                if fsync {
                    file.sync()?;
                }
            }
            Ok(())
        })
        .await
    }

    fn tick_every(&self) -> Option<Duration> {
        Some(self.check_every)
    }

    async fn tick(&mut self, _stop: &CancellationToken) -> Result<(), SinkError> {
        self.with_files(|files| {
            for file in [&mut files.requests, &mut files.audit] {
                if let Some(open) = &mut file.open {
                    open.rotate_if_old()?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        self.with_files(|files| {
            for file in [&files.requests, &files.audit] {
                if let Some(open) = &file.open {
                    open.sync()?;
                }
            }
            Ok(())
        })
        .await
    }
}
