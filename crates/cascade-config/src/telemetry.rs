//! Logs: where the server's `tracing` output goes, in the format `[server]` asks for.

use crate::{LogFormat, ServerConfig};

/// Installs the global `tracing` subscriber: logs to stderr as text or JSON lines
/// (`server.log_format`), filtered by `RUST_LOG` when set, else by `server.log_level`.
/// Call it once, before building the engine; a second call changes nothing.
pub fn init(server: &ServerConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&server.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match server.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
