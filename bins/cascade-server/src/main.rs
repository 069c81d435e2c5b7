//! `cascade-server`: reads the configuration (a TOML file plus `CASCADE_*` environment
//! overrides), opens the store, starts the engine and serves the HTTP API. On SIGTERM or
//! Ctrl-C it stops accepting requests, finishes the sends in flight, and exits; running
//! cascades continue from the store when a server starts again.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator ([`cascade_alloc`]): the engine allocates many
/// small short-lived values per cascade, and glibc's malloc spent a third of the engine's time
/// on them.
#[global_allocator]
static ALLOCATOR: cascade_alloc::Allocator = cascade_alloc::Allocator;

/// The cascade server.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "Examples:\n  cascade-server --config cascade.toml\n  cascade-server --config cascade.toml --check-config\n  CASCADE_SERVER__LISTEN=0.0.0.0:8080 cascade-server --config cascade.toml\n  cascade-server --hash-key ck_live_0123456789abcdef"
)]
struct Args {
    /// The configuration file.
    #[arg(long, short, env = "CASCADE_CONFIG", default_value = "cascade.toml")]
    config: PathBuf,
    /// The address to listen on (overrides `server.listen`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Check the configuration, print every problem with its key and file, and exit
    /// (0: valid, 2: problems).
    #[arg(long)]
    check_config: bool,
    /// Print the hash of an API key for `api_keys.NAME.hash`, and exit.
    #[arg(long, value_name = "KEY")]
    hash_key: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(key) = args.hash_key {
        println!("{}", cascade_http::auth::hash_key(&key));
        return ExitCode::SUCCESS;
    }
    let config = match cascade_config::load(Some(&args.config)) {
        Ok(c) => c,
        Err(problems) => {
            eprintln!("{} has {} problem(s):", args.config.display(), problems.0.len());
            for p in &problems.0 {
                eprintln!("  {p}");
            }
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        println!("{}: valid ({})", args.config.display(), config.summary());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Trace export runs on the runtime, so it starts inside it.
    let telemetry = {
        let _inside = runtime.enter();
        cascade_config::telemetry::init(&config.server)
    };
    let served = runtime.block_on(serve(config, args.listen));
    if let Err(e) = &served {
        tracing::error!("{e}");
    }
    // Outside async code, with the runtime still running: sends the spans still buffered.
    telemetry.shutdown();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cascade-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: cascade_config::Config, listen: Option<SocketAddr>) -> Result<(), String> {
    let built = cascade_config::build(&config).await.map_err(|p| p.to_string())?;
    let addr = listen.unwrap_or(config.server.listen);
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(listen = %local, public_url = %config.server.public_url, "cascade-server ready");
    built
        .app
        .serve(listener, cascade_http::shutdown_signal(), config.server.shutdown_grace)
        .await
        .map_err(|e| format!("server error: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}
