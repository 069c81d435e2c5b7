//! Where an attachment's bytes come from, and how they go into a multipart upload.
//!
//! An [`Attachment`]'s `url` is either a public `http(s)://` URL (providers that fetch by link
//! use it as is) or a local file (`file:///path` or an absolute path, e.g. the server's upload
//! directory), which adapters upload.

use std::path::PathBuf;

use cascade_engine::{Attachment, SendError};
use reqwest::multipart::Part;

/// Where an attachment is.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Source {
    /// A URL the provider can fetch.
    Url(String),
    /// A file on this machine.
    File(PathBuf),
}

impl Source {
    /// Reads an attachment's `url`. Anything but `http(s)://`, `file://` or an absolute path is
    /// `rejected` (the content cannot be sent as given).
    pub fn of(attachment: &Attachment) -> Result<Source, SendError> {
        let url = attachment.url.trim();
        let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
        if lower.starts_with("https://") || lower.starts_with("http://") {
            return Ok(Source::Url(url.to_owned()));
        }
        if let Some(path) = url.strip_prefix("file://") {
            return Ok(Source::File(PathBuf::from(path)));
        }
        if url.starts_with('/') {
            return Ok(Source::File(PathBuf::from(url)));
        }
        Err(SendError::rejected(
            "attachment_url",
            format!("attachment url must be http(s)://, file:// or an absolute path, not {url:?}"),
        ))
    }
}

/// The file name to give the provider: the attachment's own, else the last path segment.
pub fn file_name(attachment: &Attachment) -> String {
    if let Some(name) = attachment.filename.as_deref().filter(|n| !n.is_empty()) {
        return name.to_owned();
    }
    let path = attachment.url.split(['?', '#']).next().unwrap_or_default();
    match path.rsplit('/').next().filter(|n| !n.is_empty()) {
        Some(name) => name.to_owned(),
        None => "file".to_owned(),
    }
}

/// A multipart part streaming a local file (never read whole into memory). A file that cannot
/// be opened is `rejected`: retrying will not make it appear.
pub async fn file_part(path: &std::path::Path, attachment: &Attachment) -> Result<Part, SendError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| SendError::rejected("attachment_unreadable", format!("cannot open {}: {e}", path.display())))?;
    let size = file.metadata().await.map(|m| m.len()).unwrap_or(attachment.size);
    with_type(Part::stream_with_length(reqwest::Body::from(file), size).file_name(file_name(attachment)), attachment)
}

/// A multipart part streaming the body of `url` (for providers that take uploads only, or whose
/// fetch-by-URL limit is lower than their upload limit), fetched with `client` (an
/// [`http::client`](crate::http::client), which follows no redirects). A file host that is
/// down is `transient` (neither the sender nor the contact is at fault); one that answers 4xx,
/// or a redirect, is `rejected`.
pub async fn fetched_part(client: &reqwest::Client, url: &str, attachment: &Attachment) -> Result<Part, SendError> {
    let response = fetch(client, url).await?;
    let size = response.content_length().unwrap_or(attachment.size);
    let body = reqwest::Body::wrap_stream(response.bytes_stream());
    with_type(Part::stream_with_length(body, size).file_name(file_name(attachment)), attachment)
}

/// The whole file, for channels that carry it inside the message (email): read from this
/// machine or fetched with `client` (an [`http::client`](crate::http::client)). A file over
/// `limit` bytes is `rejected` before it is read whole; fetch failures are classed as in
/// [`fetched_part`].
pub async fn bytes(client: &reqwest::Client, source: &Source, limit: u64) -> Result<Vec<u8>, SendError> {
    let too_large = |size: u64| {
        SendError::rejected("attachment_too_large", format!("the file is {size} bytes; this channel takes {limit}"))
    };
    match source {
        Source::File(path) => {
            let unreadable = |e: std::io::Error| {
                SendError::rejected("attachment_unreadable", format!("cannot read {}: {e}", path.display()))
            };
            let size = tokio::fs::metadata(path).await.map_err(unreadable)?.len();
            if size > limit {
                return Err(too_large(size));
            }
            tokio::fs::read(path).await.map_err(unreadable)
        }
        Source::Url(url) => {
            let mut response = fetch(client, url).await?;
            if let Some(size) = response.content_length().filter(|&s| s > limit) {
                return Err(too_large(size));
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(fetch_failed)? {
                body.extend_from_slice(&chunk);
                if body.len() as u64 > limit {
                    return Err(too_large(body.len() as u64));
                }
            }
            Ok(body)
        }
    }
}

/// A successful answer from a file host: one that is down is `transient` (neither the sender
/// nor the contact is at fault); one that answers 4xx is `rejected`, and so is a redirect
/// (redirects are not followed, and asking again will not change the answer).
async fn fetch(client: &reqwest::Client, url: &str) -> Result<reqwest::Response, SendError> {
    let response = client.get(url).send().await.map_err(fetch_failed)?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    if status.is_redirection() {
        return Err(SendError::rejected(
            "attachment_redirect",
            format!("fetching the attachment answered {status}; redirects are not followed: give the file's final URL"),
        ));
    }
    let detail = format!("fetching the attachment answered {status}");
    Err(if status.is_client_error() {
        SendError::rejected("attachment_fetch", detail)
    } else {
        SendError::transient("attachment_fetch", detail)
    })
}

fn fetch_failed(e: reqwest::Error) -> SendError {
    SendError::transient("attachment_fetch", format!("fetching the attachment: {}", e.without_url()))
}

fn with_type(part: Part, attachment: &Attachment) -> Result<Part, SendError> {
    part.mime_str(&attachment.media_type)
        .map_err(|_| SendError::rejected("attachment_type", format!("not a media type: {:?}", attachment.media_type)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att(url: &str) -> Attachment {
        Attachment { url: url.into(), media_type: "image/png".into(), size: 10, filename: None }
    }

    #[test]
    fn sources() {
        assert_eq!(Source::of(&att("https://x.test/a.png")).expect("url"), Source::Url("https://x.test/a.png".into()));
        assert_eq!(Source::of(&att("file:///tmp/a.png")).expect("file"), Source::File("/tmp/a.png".into()));
        assert_eq!(Source::of(&att("/tmp/a.png")).expect("path"), Source::File("/tmp/a.png".into()));
        let err = Source::of(&att("ftp://x/a.png")).expect_err("ftp");
        assert!(err.detail.contains("ftp://x/a.png"), "{err}");
    }

    #[test]
    fn names() {
        assert_eq!(file_name(&att("https://x.test/dir/report.pdf?sig=1")), "report.pdf");
        assert_eq!(file_name(&att("https://x.test/")), "file");
        let named = Attachment { filename: Some("Q3.pdf".into()), ..att("https://x.test/a") };
        assert_eq!(file_name(&named), "Q3.pdf");
    }

    #[tokio::test]
    async fn whole_files_are_read_up_to_the_limit() {
        let path = std::env::temp_dir().join(format!("cascade-kit-bytes-{}", std::process::id()));
        std::fs::write(&path, b"0123456789").expect("write");
        let client = crate::http::client(std::time::Duration::from_secs(5));
        let source = Source::File(path.clone());
        assert_eq!(bytes(&client, &source, 10).await.expect("fits"), b"0123456789");
        let err = bytes(&client, &source, 9).await.expect_err("too large");
        assert_eq!((err.class, err.code.as_str()), (cascade_engine::ErrorClass::Rejected, "attachment_too_large"));
        std::fs::remove_file(&path).ok();
        let err = bytes(&client, &source, 10).await.expect_err("gone");
        assert_eq!(err.code, "attachment_unreadable");
    }

    #[tokio::test]
    async fn a_missing_file_is_rejected() {
        let err = file_part(std::path::Path::new("/nonexistent/a.png"), &att("/nonexistent/a.png"))
            .await
            .expect_err("missing");
        assert_eq!(err.code, "attachment_unreadable");
    }
}
