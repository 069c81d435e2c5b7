//! Logs and traces: where the server's `tracing` output goes.
//!
//! Logs go to stderr as text or JSON lines (`server.log_format`), filtered by `RUST_LOG` or
//! `server.log_level`. With `server.otlp_endpoint` set, the spans (`cascade.submit`,
//! `cascade.apply`, `cascade.send`, `cascade.callback`, `cascade.webhook`, each with its
//! `cascade_id` or `connection`) are also exported to an OpenTelemetry collector over
//! OTLP/HTTP (protobuf), in batches sent from a task on the tokio runtime. Export has its own
//! filter ([`EXPORT_FILTER`]): `cascade.apply`, a `debug` span, is exported whatever the log
//! level, and logged only at `debug`.
//!
//! ```no_run
//! # fn demo(config: cascade_config::Config) {
//! let runtime = tokio::runtime::Runtime::new().expect("runtime");
//! let telemetry = {
//!     let _inside = runtime.enter(); // the export task is spawned on this runtime
//!     cascade_config::telemetry::init(&config.server)
//! };
//! runtime.block_on(async { /* serve */ });
//! telemetry.shutdown(); // outside async code, while the runtime still runs
//! # }
//! ```

use std::fmt;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{BatchConfigBuilder, SdkTracerProvider};
use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::{LogFormat, ServerConfig};

/// How long one export (with the exporter's retries) may take before it counts as failed.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Installs the global `tracing` subscriber: logs to stderr as text or JSON lines
/// (`server.log_format`), filtered by [`log_filter`]; and, when `server.otlp_endpoint` is set,
/// trace export to that collector (see [`TraceExport`]), filtered by [`EXPORT_FILTER`]. That
/// is [`subscriber`] writing to stderr.
///
/// Call it once, before building the engine, inside the tokio runtime that will run the
/// server (`Runtime::enter`): the export task is spawned on it. A second call changes nothing.
/// Keep the returned [`Telemetry`] until the server has stopped, then call
/// [`Telemetry::shutdown`] so the spans still buffered are sent.
///
/// Trace export that cannot start (no runtime, a client that cannot be built) is logged as an
/// error and the server runs without it, as it does when the collector cannot be reached.
pub fn init(server: &ServerConfig) -> Telemetry {
    let (export, failed) = match TraceExport::new(server) {
        Ok(export) => (export, None),
        Err(e) => (None, Some(e)),
    };
    let _ = subscriber(server, export.as_ref(), std::io::stderr).try_init();
    match (&export, failed) {
        (_, Some(e)) => tracing::error!(error = %e, "trace export is off"),
        (Some(export), None) => {
            tracing::info!(endpoint = %export.endpoint, service_name = %server.service_name, "exporting traces");
        }
        (None, None) => {}
    }
    Telemetry { export }
}

/// What exported spans are filtered by, whatever the log level: everything at `info` and
/// above, and the engine's `debug` spans too, so every `cascade.apply` is exported.
pub const EXPORT_FILTER: &str = "info,cascade_engine=debug";

/// What logs are filtered by: `RUST_LOG` when set, else `server.log_level`, else `info`.
pub fn log_filter(server: &ServerConfig) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&server.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The subscriber [`init`] installs, with its logs written to `logs` instead of stderr: the
/// log layer (`server.log_format`) filtered by [`log_filter`], and, with `export`, the
/// export layer filtered by [`EXPORT_FILTER`]. Each layer sees only what its own filter lets
/// through, so the log level does not decide what is exported.
pub fn subscriber<W>(
    server: &ServerConfig,
    export: Option<&TraceExport>,
    logs: W,
) -> impl Subscriber + for<'a> LookupSpan<'a> + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt::layer().with_writer(logs);
    let fmt = match server.log_format {
        LogFormat::Json => fmt.json().flatten_event(true).with_filter(log_filter(server)).boxed(),
        LogFormat::Text => fmt.with_filter(log_filter(server)).boxed(),
    };
    tracing_subscriber::registry().with(fmt).with(export.map(|e| e.layer().with_filter(EnvFilter::new(EXPORT_FILTER))))
}

/// What [`init`] set up, to keep until the server has stopped.
///
/// [`shutdown`](Telemetry::shutdown) sends the spans still buffered; dropping it does the
/// same. Either blocks until the collector has answered (or the export timed out, after 10 s),
/// so do it outside async code, or through `spawn_blocking`, while the runtime still runs.
#[derive(Debug)]
#[must_use = "keep it until the server stops, then call `shutdown` so buffered spans are sent"]
pub struct Telemetry {
    export: Option<TraceExport>,
}

impl Telemetry {
    /// Whether spans are being exported.
    pub fn is_exporting(&self) -> bool {
        self.export.is_some()
    }

    /// Sends the spans still buffered and stops exporting. A failed export is reported on
    /// stderr (the log may already be gone).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(export) = self.export.take()
            && let Err(e) = export.shutdown()
        {
            eprintln!("cascade: {e}");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Export of the server's spans to an OpenTelemetry collector over OTLP/HTTP.
///
/// Spans are queued as they end and sent in batches (up to 512 spans, at least every 5 s; the
/// standard `OTEL_BSP_*` variables change that) by a task on the tokio runtime, as protobuf to
/// `{otlp_endpoint}/v1/traces` with `server.otlp_headers`. The resource names the service
/// (`server.service_name`) and its version; `OTEL_RESOURCE_ATTRIBUTES` adds to it. A full
/// queue drops spans rather than slow the server down, and a collector that cannot be reached
/// costs failed exports, logged by the exporter, not requests.
///
/// [`init`] installs it for the server; [`layer`](TraceExport::layer) puts it under any
/// subscriber.
#[derive(Debug)]
pub struct TraceExport {
    provider: SdkTracerProvider,
    endpoint: String,
}

impl TraceExport {
    /// Starts export to `server.otlp_endpoint`; `Ok(None)` when it is not set. Must be called
    /// inside a tokio runtime (multi-threaded), which the export task is spawned on.
    pub fn new(server: &ServerConfig) -> Result<Option<Self>, ExportError> {
        let Some(base) = &server.otlp_endpoint else { return Ok(None) };
        let endpoint = traces_url(base);
        let failed = |reason: String| ExportError { endpoint: endpoint.clone(), reason };
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(failed("it must start inside the tokio runtime".into()));
        }
        let headers = server.otlp_headers.iter().map(|(k, v)| (k.clone(), v.expose().to_owned())).collect();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .with_headers(headers)
            .build()
            .map_err(|e| failed(e.to_string()))?;
        let resource = Resource::builder()
            .with_service_name(server.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let batching = BatchConfigBuilder::default().with_max_export_timeout(EXPORT_TIMEOUT).build();
        let processor = BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio)
            .with_batch_config(batching)
            .build();
        let provider = SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource).build();
        Ok(Some(Self { provider, endpoint }))
    }

    /// The URL spans are sent to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A layer that turns the spans of a subscriber into exported traces (events inside a
    /// span become its span events). It has no filter of its own: [`subscriber`] gives it
    /// [`EXPORT_FILTER`].
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static + use<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("cascade"))
    }

    /// Sends the spans still buffered and stops. Blocks until the collector has answered or
    /// the export timed out: call it outside async code (or through `spawn_blocking`) while
    /// the runtime still runs. Spans that end later are dropped.
    pub fn shutdown(self) -> Result<(), ExportError> {
        self.provider.shutdown().map_err(|e| ExportError { endpoint: self.endpoint.clone(), reason: e.to_string() })
    }
}

/// Trace export could not start, or its last spans could not be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportError {
    /// Where spans go.
    pub endpoint: String,
    /// What went wrong.
    pub reason: String,
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "trace export to {}: {}", self.endpoint, self.reason)
    }
}

impl std::error::Error for ExportError {}

/// The traces URL of a collector's base URL: `/v1/traces` appended to its path, unless the
/// path ends with it already.
///
/// ```
/// # use cascade_config::telemetry::traces_url;
/// let url = |s: &str| traces_url(&s.parse().expect("url"));
/// assert_eq!(url("http://127.0.0.1:4318"), "http://127.0.0.1:4318/v1/traces");
/// assert_eq!(url("https://otel.example.com/team-a/"), "https://otel.example.com/team-a/v1/traces");
/// assert_eq!(url("https://otel.example.com/v1/traces"), "https://otel.example.com/v1/traces");
/// ```
pub fn traces_url(base: &url::Url) -> String {
    let mut url = base.clone();
    let path = url.path().trim_end_matches('/').to_owned();
    if !path.ends_with("/v1/traces") {
        url.set_path(&format!("{path}/v1/traces"));
    }
    url.to_string()
}

/// Whether `name` can be an HTTP header name (RFC 9110 token characters).
pub(crate) fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `value` can be an HTTP header value (no control characters but tab).
pub(crate) fn is_header_value(value: &str) -> bool {
    value.bytes().all(|b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}
