//! Uploaded files: streamed to disk, never held whole in memory, and served to providers that
//! fetch by URL through expiring signed links.
//!
//! Each upload is two files in the upload directory: `<id>` (the bytes) and `<id>.json` (its
//! name, media type and size). A part is written to `<id>.part` first and renamed when
//! complete, so a crash never leaves a half file that looks whole. Links are
//! `{public_url}/files/{id}?expires=<unix>&sig=<hex HMAC-SHA256(secret, "id.expires")>`.
//!
//! An upload is kept while it is in use: the modification time of `<id>.json` is when a
//! request last named it (its upload, or a cascade sending it, [`Uploads::take`]), and the
//! server's upload worker deletes an upload once that is longer ago than the link lifetime
//! (`server.link_ttl`, 7 days) and [`TOUCH_EVERY`] more ([`Uploads::sweep`]): no link made
//! when it was last named still works then. Uploads stored before the directory was first
//! swept count as named then (the `.in-use-since` file), as nothing marked their use before.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use cascade_channel_kit::webhook::{constant_time_eq, hmac_sha256};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

/// What is known of one upload.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UploadInfo {
    /// The id to refer to it by (`message.attachment.upload_id`).
    pub upload_id: String,
    /// The file name as uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Why an upload failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Larger than the limit.
    #[error("the file is larger than the {0}-byte limit")]
    TooLarge(u64),
    /// Writing it failed.
    #[error("could not store the file: {0}")]
    Io(#[from] std::io::Error),
}

/// The upload directory and link signing.
#[derive(Clone)]
pub struct Uploads {
    dir: PathBuf,
    max_size: u64,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Uploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploads").field("dir", &self.dir).field("max_size", &self.max_size).finish_non_exhaustive()
    }
}

/// An upload in progress: bytes go straight to disk.
#[derive(Debug)]
pub struct Writer {
    file: tokio::fs::File,
    part: PathBuf,
    id: String,
    size: u64,
    max: u64,
}

impl Writer {
    /// Appends a chunk; fails (and the part is removed by [`Writer::abort`]) past the limit.
    pub async fn write(&mut self, chunk: &Bytes) -> Result<(), UploadError> {
        self.size += chunk.len() as u64;
        if self.size > self.max {
            return Err(UploadError::TooLarge(self.max));
        }
        self.file.write_all(chunk).await?;
        Ok(())
    }

    /// Drops a failed upload.
    pub async fn abort(self) {
        drop(self.file);
        let _ = tokio::fs::remove_file(&self.part).await;
    }
}

impl Uploads {
    /// Files go to `dir` (created if missing), each at most `max_size` bytes; links are signed
    /// with `secret`.
    pub fn new(dir: impl Into<PathBuf>, max_size: u64, secret: impl Into<Vec<u8>>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir, max_size, secret: secret.into() })
    }

    /// The size limit.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// Starts an upload.
    pub async fn begin(&self) -> Result<Writer, UploadError> {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let part = self.dir.join(format!("{id}.part"));
        let file = tokio::fs::File::create(&part).await?;
        Ok(Writer { file, part, id, size: 0, max: self.max_size })
    }

    /// Completes an upload: flushes it to disk, then makes it visible.
    pub async fn finish(
        &self,
        writer: Writer,
        filename: Option<String>,
        media_type: String,
    ) -> Result<UploadInfo, UploadError> {
        writer.file.sync_all().await?;
        drop(writer.file);
        let info = UploadInfo { upload_id: writer.id.clone(), filename, media_type, size: writer.size };
        let meta = serde_json::to_vec(&info).map_err(std::io::Error::other)?;
        tokio::fs::write(self.dir.join(format!("{}.json", writer.id)), meta).await?;
        tokio::fs::rename(&writer.part, self.path(&writer.id)).await?;
        Ok(info)
    }

    /// An upload's details, if it exists.
    pub async fn info(&self, id: &str) -> Option<UploadInfo> {
        if !valid_id(id) {
            return None;
        }
        let meta = tokio::fs::read(self.dir.join(format!("{id}.json"))).await.ok()?;
        let info: UploadInfo = serde_json::from_slice(&meta).ok()?;
        tokio::fs::metadata(self.path(id)).await.ok()?;
        Some(info)
    }

    /// Where an upload's bytes are.
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// The signed query (`expires=…&sig=…`) for `id` until `expires` (unix seconds).
    pub fn sign(&self, id: &str, expires: i64) -> String {
        format!("expires={expires}&sig={}", self.signature(id, expires))
    }

    /// Checks a signed link at `now`.
    pub fn verify(&self, id: &str, expires: i64, sig: &str, now: i64) -> bool {
        let expected = self.signature(id, expires);
        constant_time_eq(expected.as_bytes(), sig.as_bytes()) && now <= expires && valid_id(id)
    }

    /// The `sig` of a link to `id` until `expires`: hex HMAC-SHA256 of `<id>.<expires>`.
    fn signature(&self, id: &str, expires: i64) -> String {
        hex::encode(hmac_sha256(&self.secret, format!("{id}.{expires}").as_bytes()))
    }

    /// The upload directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An upload's details for a request that names it, marking it in use now so that it is
    /// kept for another link lifetime; `None` if there is no such upload. One trip to the
    /// blocking pool: the details read, the bytes looked for, the mark renewed (a mark less
    /// than [`TOUCH_EVERY`] old is left as it is; one that cannot be written, say in a
    /// read-only directory, is logged).
    pub async fn take(&self, id: &str) -> Option<UploadInfo> {
        if !valid_id(id) {
            return None;
        }
        let (meta, bytes, upload) = (self.dir.join(format!("{id}.json")), self.path(id), id.to_owned());
        tokio::task::spawn_blocking(move || {
            let info: UploadInfo = serde_json::from_slice(&std::fs::read(&meta).ok()?).ok()?;
            std::fs::metadata(&bytes).ok()?;
            if let Err(e) = mark(&meta) {
                tracing::warn!(error = %e, %upload, "could not mark an upload as in use");
            }
            Some(info)
        })
        .await
        .ok()
        .flatten()
    }

    /// Deletes the uploads not named since `unused_for` before `now`, and what interrupted
    /// uploads left behind (a `.part` not written to since `parts_after`, or one of an
    /// upload's two files without the other) as old. Returns how many uploads went. Files whose
    /// names are not an upload's are left alone; a file that cannot be removed is logged and
    /// the rest still go.
    pub async fn sweep(&self, unused_for: Duration, parts_after: Duration, now: SystemTime) -> std::io::Result<usize> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || sweep(&dir, unused_for, parts_after, now))
            .await
            .map_err(std::io::Error::other)?
    }
}

/// How often a named upload's mark is renewed at most; a sweep allows for it.
pub const TOUCH_EVERY: Duration = Duration::from_secs(3_600);

/// The file whose time is when the directory was first swept.
const IN_USE_SINCE: &str = ".in-use-since";

/// [`Uploads::sweep`], blocking.
fn sweep(dir: &Path, unused_for: Duration, parts_after: Duration, now: SystemTime) -> std::io::Result<usize> {
    let since = dir.join(IN_USE_SINCE);
    let marked_since = match std::fs::metadata(&since) {
        Ok(meta) => meta.modified()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&since, b"")?;
            now
        }
        Err(e) => return Err(e),
    };
    let cutoff = now.checked_sub(unused_for).unwrap_or(SystemTime::UNIX_EPOCH);
    let parts_cutoff = now.checked_sub(parts_after).unwrap_or(SystemTime::UNIX_EPOCH);
    // Each upload's files and whether it is to go. An upload with details was last named at
    // their time (or when marks began, if later); without them, it is what a crash left, as
    // old as its newest file.
    struct Found {
        files: Vec<PathBuf>,
        named: Option<SystemTime>,
        part: Option<SystemTime>,
        latest: SystemTime,
    }
    let mut uploads: HashMap<String, Found> = HashMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let (id, kind) = match name.split_once('.') {
            Some((id, kind @ ("json" | "part"))) => (id, kind),
            None => (name, ""),
            Some(_) => continue,
        };
        if !valid_id(id) {
            continue;
        }
        // Gone since it was listed: renamed by an upload finishing, removed by another sweep.
        let modified = match entry.metadata().and_then(|m| m.modified()) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let found = uploads.entry(id.to_owned()).or_insert(Found {
            files: Vec::new(),
            named: None,
            part: None,
            latest: SystemTime::UNIX_EPOCH,
        });
        found.files.push(entry.path());
        match kind {
            "json" => found.named = Some(modified.max(marked_since)),
            "part" => found.part = Some(modified),
            _ => {}
        }
        found.latest = found.latest.max(modified);
    }
    let mut gone = 0;
    for (id, mut found) in uploads {
        let stale = match (found.named, found.part) {
            (Some(named), _) => named < cutoff,
            (None, Some(part)) if found.files.len() == 1 => part < parts_cutoff,
            _ => found.latest.max(marked_since) < cutoff,
        };
        if !stale {
            continue;
        }
        // Named since it was listed (a cascade took it just now): it stays.
        if found.named.is_some()
            && std::fs::metadata(dir.join(format!("{id}.json")))
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.max(marked_since) >= cutoff)
        {
            continue;
        }
        // The details last: until they go, a sweep that stopped halfway finds the upload again.
        found.files.sort_by_key(|f| f.extension().is_some_and(|e| e == "json"));
        for file in found.files {
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(error = %e, file = %file.display(), "could not delete an unused upload"),
            }
        }
        gone += 1;
    }
    Ok(gone)
}

/// How often the server's upload worker looks for uploads to delete.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3_600);

/// Deletes unused uploads (at once, then every [`SWEEP_EVERY`]) until `stopped` turns true:
/// those not named for longer than the server's link lifetime and [`TOUCH_EVERY`].
pub(crate) async fn run(app: crate::App, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let Some(uploads) = app.inner().uploads.clone() else { return };
    let unused_for = app.inner().link_ttl + TOUCH_EVERY;
    // A part is written to as its bytes arrive; one quiet for longer than an upload may take
    // is one a crash cut short.
    let parts_after = app.inner().upload_timeout.max(TOUCH_EVERY);
    loop {
        match uploads.sweep(unused_for, parts_after, SystemTime::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(uploads = n, "deleted uploads no request has named for the link lifetime"),
            Err(e) => tracing::warn!(error = %e, dir = %uploads.dir().display(), "looking for unused uploads failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
}

/// Upload ids are 32 lower-case hex digits: nothing else reaches the file system.
fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// A media type for a file name, when the client sent none (or a generic one).
pub fn guess_media_type(filename: Option<&str>) -> &'static str {
    let ext = filename.and_then(|f| f.rsplit_once('.')).map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "mp4" => "video/mp4",
        "3gp" => "video/3gpp",
        "mp3" => "audio/mpeg",
        "ogg" | "opus" => "audio/ogg",
        "aac" => "audio/aac",
        "amr" => "audio/amr",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "csv" => "text/csv",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls" => "application/vnd.ms-excel",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}

/// Sets an upload's mark (its `.json`'s modification time) to now, unless it is less than
/// [`TOUCH_EVERY`] old.
fn mark(meta: &Path) -> std::io::Result<()> {
    let named = std::fs::metadata(meta)?.modified()?;
    let now = SystemTime::now();
    if now.duration_since(named).is_ok_and(|ago| ago < TOUCH_EVERY) {
        return Ok(());
    }
    std::fs::File::options().write(true).open(meta)?.set_modified(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_and_signs() {
        let dir = std::env::temp_dir().join(format!("cascade-uploads-{}", uuid::Uuid::now_v7().simple()));
        let uploads = Uploads::new(&dir, 10, b"k".to_vec()).expect("dir");
        let mut w = uploads.begin().await.expect("begin");
        w.write(&Bytes::from_static(b"hello")).await.expect("chunk");
        let info = uploads.finish(w, Some("a.txt".into()), "text/plain".into()).await.expect("finish");
        assert_eq!(info.size, 5);
        assert_eq!(uploads.info(&info.upload_id).await, Some(info.clone()));
        assert_eq!(std::fs::read(uploads.path(&info.upload_id)).expect("bytes"), b"hello");
        assert!(uploads.info("../../etc/passwd").await.is_none());

        let mut w = uploads.begin().await.expect("begin");
        assert!(matches!(w.write(&Bytes::from_static(b"12345678901")).await, Err(UploadError::TooLarge(10))));
        w.abort().await;
        let left: Vec<_> = std::fs::read_dir(&dir).expect("dir").collect();
        assert_eq!(left.len(), 2, "only the finished upload and its details remain");

        let q = uploads.sign(&info.upload_id, 100);
        let sig = q.split("sig=").nth(1).expect("sig");
        assert!(uploads.verify(&info.upload_id, 100, sig, 99));
        assert!(!uploads.verify(&info.upload_id, 100, sig, 101), "expired");
        assert!(!uploads.verify(&info.upload_id, 101, sig, 99), "expiry changed");
        let _ = std::fs::remove_dir_all(dir);
        assert_eq!(guess_media_type(Some("x.JPG")), "image/jpeg");
    }

    #[tokio::test]
    async fn unused_uploads_and_leftovers_are_swept_and_used_ones_kept() {
        let dir = std::env::temp_dir().join(format!("cascade-uploads-{}", uuid::Uuid::now_v7().simple()));
        let uploads = Uploads::new(&dir, 100, b"k".to_vec()).expect("uploads");
        let put = async |text: &'static [u8]| {
            let mut w = uploads.begin().await.expect("begin");
            w.write(&Bytes::from_static(text)).await.expect("chunk");
            uploads.finish(w, None, "text/plain".into()).await.expect("finish").upload_id
        };
        let day = Duration::from_secs(86_400);
        let now = SystemTime::now();
        let set = |file: String, at: SystemTime| {
            std::fs::File::options().write(true).open(dir.join(file)).expect("open").set_modified(at).expect("time")
        };
        // Stored by a version that did not mark uploads in use, a month ago.
        let before = put(b"before").await;
        set(before.clone(), now - 30 * day);
        set(format!("{before}.json"), now - 30 * day);
        assert_eq!(uploads.sweep(7 * day, day, now).await.expect("sweep"), 0, "kept: marks begin now");

        let (old, used, new) = (put(b"old").await, put(b"used").await, put(b"new").await);
        // What a crash left: a part, and details whose bytes never arrived.
        let crashed = uuid::Uuid::now_v7().simple().to_string();
        std::fs::write(dir.join(format!("{crashed}.part")), b"half").expect("part");
        let orphan = uuid::Uuid::now_v7().simple().to_string();
        std::fs::write(dir.join(format!("{orphan}.json")), b"{}").expect("details");
        std::fs::write(dir.join("notes.txt"), b"not an upload").expect("other file");
        assert_eq!(uploads.sweep(7 * day, day, now).await.expect("sweep"), 0, "nothing is a day old yet");

        // Eight days on, `used` was named a moment ago, and an upload is in progress.
        let later = now + 8 * day;
        set(format!("{used}.json"), later);
        let in_progress = uuid::Uuid::now_v7().simple().to_string();
        std::fs::write(dir.join(format!("{in_progress}.part")), b"arriving").expect("part");
        set(format!("{in_progress}.part"), later);
        assert_eq!(
            uploads.sweep(7 * day, day, later).await.expect("sweep"),
            5,
            "before, old, new, the part, the orphan"
        );
        assert!(uploads.info(&used).await.is_some(), "an upload named within the period stays");
        for id in [&before, &old, &new, &crashed, &orphan] {
            assert!(uploads.info(id).await.is_none());
        }
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut expected = vec![
            used.clone(),
            format!("{used}.json"),
            format!("{in_progress}.part"),
            "notes.txt".into(),
            IN_USE_SINCE.into(),
        ];
        expected.sort();
        assert_eq!(left, expected);

        // Naming an upload marks it in use now, once an hour at most; a missing one is no upload.
        let recent = SystemTime::now() - Duration::from_secs(1_800);
        set(format!("{used}.json"), recent);
        assert!(uploads.take(&used).await.is_some());
        let kept = std::fs::metadata(dir.join(format!("{used}.json"))).expect("meta").modified().expect("time");
        assert_eq!(kept, recent, "a mark less than an hour old is left as it is");
        set(format!("{used}.json"), now - day);
        assert!(uploads.take(&used).await.is_some());
        let named = std::fs::metadata(dir.join(format!("{used}.json"))).expect("meta").modified().expect("time");
        assert!(named + Duration::from_secs(60) > SystemTime::now(), "marked now");
        assert!(uploads.take(&old).await.is_none(), "a deleted upload is not there to name");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
