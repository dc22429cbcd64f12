//! The `leadgate` command line: one file per command.

pub mod api;
pub mod dedupe;
#[cfg(feature = "demo")]
pub mod demo;
pub mod destination;
pub mod dlq;
pub mod keys;
pub mod new;
pub mod normalize;
pub mod plugin;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Parser)]
#[command(name = "leadgate", version, about = "A local CRM connector")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the host: ingest API, delivery workers, webhooks.
    Serve {
        /// Configuration file (TOML); defaults apply where it is silent.
        #[arg(long, short, env = "LEADGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Start a simulated HubSpot and the host, post the bundled messy
    /// leads, wait for delivery and print a summary.
    #[cfg(feature = "demo")]
    Demo {
        /// Print the summary as one JSON object.
        #[arg(long)]
        json: bool,
        /// `hubspot`, or `all`: HubSpot, Salesforce, Zoho CRM, Dynamics
        /// 365, Pipedrive and a webhook receiver at once.
        #[arg(long, value_enum, default_value_t = demo::DemoCrms::Hubspot)]
        crm: demo::DemoCrms,
    },
    /// Dedupe a JSONL file of leads offline with the server's dedupe (and
    /// its model file, if there is one); `leadgate dedupe train` trains
    /// that model.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Dedupe {
        #[command(subcommand)]
        command: Option<dedupe::DedupeCommand>,
        #[arg(long, short, required = true)]
        input: Option<PathBuf>,
        #[arg(long, short, required = true)]
        output: Option<PathBuf>,
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Train the match model on the input first (as `dedupe train`
        /// does, without writing it) and decide with it, as Splink trains
        /// on the records it links.
        #[arg(long)]
        train: bool,
    },
    /// Normalize a CSV or JSONL file of leads with the server's rules; the
    /// output (same format) adds `norm_*` fields, `flags` and `errors`.
    Normalize {
        #[arg(long, short)]
        input: PathBuf,
        #[arg(long, short)]
        output: PathBuf,
        /// Region for phones without a country code (ignored with
        /// --source); `none`: international numbers only.
        #[arg(long, default_value = "US")]
        region: String,
        /// Use this configured source's options (needs --config or defaults).
        #[arg(long)]
        source: Option<String>,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Load one plugin component and call it: describe, push, verify a
    /// webhook, transform. For adapter authors and for checking a file
    /// before it goes into the plugin folder.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Scaffold a new plugin.
    #[command(subcommand)]
    New(NewCommand),
    /// The dead-letter queue of a running host: list, show, replay,
    /// discard.
    Dlq {
        #[command(flatten)]
        host: api::HostArgs,
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// Operator actions on a destination of a running host.
    Destination {
        #[command(flatten)]
        host: api::HostArgs,
        #[command(subcommand)]
        command: destination::DestinationCommand,
    },
    /// The store's encryption keys on a running host: status, rotate.
    Keys {
        #[command(flatten)]
        host: api::HostArgs,
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Check a configuration file and print the result.
    CheckConfig {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum NewCommand {
    /// A Rust adapter crate on leadgate-sdk, with unit tests and a mapping:
    /// `adapters/NAME` in a leadgate checkout, else `./NAME`.
    Adapter {
        /// Lowercase letters, digits and dashes (for example acme-crm).
        name: String,
        /// Where to create the crate.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The leadgate SDK to depend on (a checkout's sdk/ folder).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    #[cfg(feature = "demo")]
    let quiet = matches!(cli.command, Command::Demo { json: true, .. });
    #[cfg(not(feature = "demo"))]
    let quiet = false;
    init_tracing(quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(crate::allocator::on_worker_park)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve { config: path } => {
                private_files();
                let config = Config::load(path.as_deref())?;
                match std::env::current_exe() {
                    Ok(exe) => crate::plugins::compile_in_child(exe, path),
                    Err(e) => tracing::warn!(error = %e, "own executable unknown; plugins compile in this process"),
                }
                let host = crate::app::start(config).await?;
                host.run_until_signal().await
            }
            #[cfg(feature = "demo")]
            Command::Demo { json, crm } => demo::run(json, crm).await,
            Command::Dedupe {
                command: Some(command),
                ..
            } => dedupe::command(command).await,
            Command::Dedupe {
                command: None,
                input,
                output,
                config,
                train,
            } => {
                let config = Config::load(config.as_deref())?;
                let (Some(input), Some(output)) = (input, output) else {
                    anyhow::bail!("leadgate dedupe needs --input and --output");
                };
                let model = match train {
                    true => dedupe::trained_on(&input, &config)?,
                    false => config.dedupe_model()?,
                };
                dedupe::run(&input, &output, &config.dedupe, model)
            }
            Command::Normalize {
                input,
                output,
                region,
                source,
                config,
            } => normalize::main(&input, &output, &region, source, config),
            Command::Plugin(command) => plugin::run(command).await,
            Command::Dlq { host, command } => dlq::run(host.connect()?, command).await,
            Command::Destination { host, command } => {
                destination::run(host.connect()?, command).await
            }
            Command::Keys { host, command } => keys::run(host.connect()?, command).await,
            Command::New(NewCommand::Adapter { name, dir, sdk }) => {
                let made = new::new_adapter(&name, dir.as_deref(), sdk.as_deref())?;
                let dir = made.crate_dir.display();
                println!("created {dir} and {}", made.mapping.display());
                if made.in_workspace {
                    println!(
                        "it is a workspace member: `cargo test -p leadgate-adapter-{name}`; the host's build puts it in target/plugins"
                    );
                } else {
                    println!(
                        "next: cd {dir} && cargo test && cargo build --release --target wasm32-wasip2"
                    );
                }
                Ok(())
            }
            Command::CheckConfig { config } => {
                let config = Config::load(config.as_deref())?;
                println!(
                    "configuration is valid: {} source(s), {} destination(s)",
                    config.sources.len(),
                    config.destinations.len()
                );
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The files and folders the service creates (the store and its WAL, the
/// compiled-plugin cache, the compiler child's output) hold personal data
/// or what serves it: readable and writable by the owner only (0600 and
/// 0700), whatever the umask it was started with. Only for the service:
/// `leadgate new` writes source files the user shares.
fn private_files() {
    #[cfg(unix)]
    // SAFETY: umask(2) only sets this process's file-mode creation mask.
    unsafe {
        libc::umask(0o077);
    }
}

fn init_tracing(quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if quiet {
        "error"
    } else {
        "info,wasmtime=warn,cranelift=warn,sqlx=warn"
    };
    let filter =
        EnvFilter::try_from_env("LEADGATE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Masked(std::io::stderr))
        .try_init();
}

/// The log's last line of defence: every line the host (or a crate it
/// uses, at any level) writes passes through
/// [`leadgate_runtime::mask::mask_pii`], so an email or phone number that
/// reached a message, a field or an error is masked on its way out. (The
/// host never formats a lead's fields into a log line in the first place.)
struct Masked<W>(W);

impl<'a, W: tracing_subscriber::fmt::MakeWriter<'a>> tracing_subscriber::fmt::MakeWriter<'a>
    for Masked<W>
{
    type Writer = MaskedWriter<W::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        MaskedWriter(self.0.make_writer())
    }
}

/// One log line's writer (the formatter writes a whole line at once).
struct MaskedWriter<W>(W);

impl<W: std::io::Write> std::io::Write for MaskedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let masked = leadgate_runtime::mask::mask_pii(&String::from_utf8_lossy(buf));
        self.0.write_all(masked.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whatever_reaches_a_log_line_is_masked() {
        #[derive(Clone, Default)]
        struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(Masked({
                let b = buffer.clone();
                move || b.clone()
            }))
            .with_ansi(true)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(
                error = "CRM said: jane.doe@example.com / +1 415 555 0123 is a duplicate",
                "adapter call failed for {}",
                "ops.lead@corp.example"
            );
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("adapter call failed"), "{text}");
        for secret in ["jane.doe", "ops.lead", "555 0123"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("j***@example.com"), "{text}");
    }
}
