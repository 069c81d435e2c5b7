//! `cascade campaign export`: a campaign's recipients as CSV, streamed from the server to
//! stdout or a file chunk by chunk, never whole in memory.

use std::path::{Path, PathBuf};

use clap::Args;
use futures_util::StreamExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::Global;
use crate::cascades::client;
use crate::client::error_chain;
use crate::exit::{self, Failure};
use crate::out::Out;

/// `cascade campaign export` options.
#[derive(Debug, Args)]
#[command(after_help = "\
Columns: line, phone, email, name, status, reason, channel, cost, cascade_id, at. `line` is the
recipient's line in the uploaded list, so failures can be fixed there and sent again.

With -o, the number of rows written is printed on stderr (with --json, `{\"file\", \"rows\"}` on
stdout); a download that breaks off leaves no file behind.

Exit codes: 0 written; 2 an unknown --status; 4 no such campaign; 5 the server cannot be
reached or the download broke off, or the file cannot be written.

Examples:
  cascade campaign export 0191d2e4-5b6a-7c8d-9e0f-1a2b3c4d5e6f -o failed.csv
  cascade campaign export 0191d2e4-5b6a-7c8d-9e0f-1a2b3c4d5e6f --status cancelled,pending > not-sent.csv
  cascade campaign export 0191d2e4-5b6a-7c8d-9e0f-1a2b3c4d5e6f --status delivered | wc -l")]
pub struct ExportArgs {
    /// The campaign's id.
    id: String,
    /// Which recipients, comma-separated: failed, expired, cancelled, delivered, pending.
    #[arg(long, default_value = "failed,expired", value_name = "STATUSES")]
    status: String,
    /// Write to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Counts CSV records in a byte stream, chunk by chunk: line ends outside quoted fields.
#[derive(Debug, Default)]
struct RecordCounter {
    quoted: bool,
    records: u64,
    /// Bytes seen since the last record ended.
    open: bool,
}

impl RecordCounter {
    fn feed(&mut self, chunk: &[u8]) {
        for &b in chunk {
            match b {
                b'"' => {
                    self.quoted = !self.quoted;
                    self.open = true;
                }
                b'\n' if !self.quoted => {
                    self.records += 1;
                    self.open = false;
                }
                b'\r' if !self.quoted => {}
                _ => self.open = true,
            }
        }
    }

    /// Records seen, the last one counted even without a line end.
    fn records(&self) -> u64 {
        self.records + u64::from(self.open)
    }
}

/// Where the CSV goes.
enum Sink {
    Stdout(tokio::io::Stdout),
    File(tokio::fs::File, PathBuf),
}

impl Sink {
    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout(s) => s.write_all(bytes).await,
            Sink::File(f, _) => f.write_all(bytes).await,
        }
    }

    async fn finish(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout(s) => s.flush().await,
            Sink::File(f, _) => {
                f.flush().await?;
                f.sync_all().await
            }
        }
    }
}

fn write_failure(to: Option<&Path>, e: std::io::Error) -> Failure {
    match to {
        Some(p) => Failure::io(format!("-o {}: cannot write it: {e}", p.display())),
        None => Failure::io(format!("cannot write to stdout: {e}")),
    }
}

/// Streams the export.
pub(super) async fn run(g: &Global, out: &Out, a: ExportArgs) -> Result<u8, Failure> {
    let kinds = cascade_campaigns::export::parse_kinds(&a.status.to_ascii_lowercase())
        .map_err(|e| Failure::invalid(format!("--status: {e}")))?;
    if kinds.is_empty() {
        return Err(Failure::invalid("--status: name at least one of failed, expired, cancelled, delivered, pending"));
    }
    let status: Vec<String> =
        a.status.split(',').map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect();
    let mut body = client(g)?.campaign_export(&a.id, &status.join(",")).await?;
    // The file is made only once the server has agreed to the export.
    let mut sink = match &a.output {
        Some(path) => {
            let file = tokio::fs::File::create(path).await.map_err(|e| write_failure(Some(path), e))?;
            Sink::File(file, path.clone())
        }
        None => Sink::Stdout(tokio::io::stdout()),
    };
    let mut counter = RecordCounter::default();
    let copied: Result<(), Failure> = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                Failure::io(format!(
                    "the export broke off after {} rows: {}",
                    counter.records().saturating_sub(1),
                    error_chain(&e)
                ))
            })?;
            counter.feed(&chunk);
            sink.write(&chunk).await.map_err(|e| write_failure(a.output.as_deref(), e))?;
        }
        sink.finish().await.map_err(|e| write_failure(a.output.as_deref(), e))
    }
    .await;
    if let Err(mut f) = copied {
        if let Sink::File(file, path) = sink {
            drop(file);
            if tokio::fs::remove_file(&path).await.is_ok() {
                f.message.push_str(&format!(" ({} removed)", path.display()));
            }
        }
        return Err(f);
    }
    // The header is not a row.
    let rows = counter.records().saturating_sub(1);
    if let Sink::File(_, path) = &sink {
        if out.json {
            out.json_line(&json!({"file": path.display().to_string(), "rows": rows, "status": status}));
        }
        eprintln!(
            "wrote {rows} {} ({}) to {}",
            if rows == 1 { "row" } else { "rows" },
            status.join(", "),
            path.display()
        );
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_counted_across_chunks_and_quoted_line_ends() {
        let csv = "line,name,reason\n2,Ann,\"no answer\nat all\"\n3,\"Bob \"\"B\"\"\",x\r\n4,Cy,y";
        for split in 0..csv.len() {
            let mut c = RecordCounter::default();
            c.feed(&csv.as_bytes()[..split]);
            c.feed(&csv.as_bytes()[split..]);
            assert_eq!(c.records(), 4, "split at {split}");
        }
        let mut c = RecordCounter::default();
        c.feed(b"line,name\n");
        assert_eq!(c.records(), 1);
        assert_eq!(RecordCounter::default().records(), 0);
    }
}
