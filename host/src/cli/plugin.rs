//! `leadgate plugin …`: load one component outside the server and call it,
//! with exactly the engine, limits and capabilities the server would give it.
//! For adapter authors (does my `.wasm` load, what does it declare, what
//! does it answer against a sandbox CRM) and for ops checking a file before
//! dropping it into the plugin folder.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use leadgate_runtime::{
    AdapterPlugin, Capabilities, Delivery, PluginEngine, PushContext, Secrets, TransformPlugin,
    WebhookRequest,
};
use serde_json::{Value, json};

use crate::config::{Config, resolve_secret};
use crate::plugins::load::{
    Compiled, compile_file, describe_adapter, describe_transform, short_hash,
};

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Compile the component on standard input to machine code in `out`
    /// (the compiled-component cache); the server runs this as a child so
    /// the compiler's memory is never its own.
    #[command(hide = true)]
    Precompile {
        #[arg(long)]
        out: std::path::PathBuf,
        /// Configuration file whose `[plugins]` limits apply.
        #[arg(long = "limits-from")]
        limits_from: Option<std::path::PathBuf>,
    },
    /// Load a component and print what it declares (adapter or transform).
    Describe {
        /// The component (`.wasm`).
        file: std::path::PathBuf,
    },
    /// Push deliveries through an adapter and print one outcome per line.
    Push {
        file: std::path::PathBuf,
        #[command(flatten)]
        grants: Grants,
        /// One delivery's CRM properties as a JSON object of strings;
        /// repeat for a batch.
        #[arg(long = "properties", value_name = "JSON", required = true)]
        properties: Vec<String>,
        /// Destination name the adapter sees.
        #[arg(long, default_value = "cli")]
        destination: String,
        /// Attempt number the adapter sees.
        #[arg(long, default_value_t = 1)]
        attempt: u32,
    },
    /// Hand a signed webhook to an adapter and print the events it parses.
    VerifyWebhook {
        file: std::path::PathBuf,
        #[command(flatten)]
        grants: Grants,
        /// The URL the CRM called.
        #[arg(long, default_value = "http://127.0.0.1/v1/webhooks/cli")]
        url: String,
        /// A request header, `Name: value`; repeat as needed.
        #[arg(long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
        /// File holding the raw request body.
        #[arg(long)]
        body: std::path::PathBuf,
    },
    /// Run a source transform on one payload and print the leads it makes.
    Transform {
        file: std::path::PathBuf,
        /// The payload file.
        #[arg(long)]
        payload: std::path::PathBuf,
        /// Transform configuration, `key=value`; repeat as needed.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
    },
}

/// What the plugin is granted, as a destination would grant it.
#[derive(clap::Args)]
pub struct Grants {
    /// Destination configuration the adapter reads, `key=value`.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// A secret, `name=value` (or `name=env:VAR`, `name=file:PATH`); the
    /// adapter can name it but never read it.
    #[arg(long = "secret", value_name = "NAME=VALUE")]
    secrets: Vec<String>,
    /// A host the adapter may call; default: the hosts it declares.
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<String>,
    /// Configuration file whose `[plugins]` limits apply.
    #[arg(long = "limits-from")]
    limits_from: Option<std::path::PathBuf>,
}

impl Grants {
    fn config_pairs(&self) -> anyhow::Result<Vec<(String, String)>> {
        self.config
            .iter()
            .map(|kv| split_pair(kv, "--config"))
            .collect()
    }

    fn capabilities(&self, declared_hosts: &[String]) -> anyhow::Result<Capabilities> {
        let mut secrets = Secrets::new();
        for kv in &self.secrets {
            let (name, value) = split_pair(kv, "--secret")?;
            let value = resolve_secret(&value)
                .map_err(|reason| anyhow::anyhow!("--secret {name}: {reason}"))?;
            secrets.insert(name, value);
        }
        for host in &self.allow_hosts {
            leadgate_runtime::check_host_pattern(host)
                .map_err(|reason| anyhow::anyhow!("--allow-host: {reason}"))?;
        }
        let hosts = if self.allow_hosts.is_empty() {
            declared_hosts
        } else {
            &self.allow_hosts[..]
        };
        Ok(Capabilities::new(hosts, secrets))
    }
}

fn split_pair(kv: &str, flag: &str) -> anyhow::Result<(String, String)> {
    match kv.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => bail!("{flag} takes KEY=VALUE, got {kv:?}"),
    }
}

pub async fn run(command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::Precompile { out, limits_from } => {
            use std::io::Read as _;
            let config = Config::load(limits_from.as_deref())?;
            let engine = crate::plugins::engine(&config.plugins)?;
            let mut wasm = Vec::new();
            std::io::stdin().read_to_end(&mut wasm)?;
            engine.precompile_to(&wasm, &out)
        }
        PluginCommand::Describe { file } => describe(&file, &Config::load(None)?).await,
        PluginCommand::Push {
            file,
            grants,
            properties,
            destination,
            attempt,
        } => {
            let adapter = load_adapter(&file, &grants).await?;
            let batch = properties
                .iter()
                .enumerate()
                .map(|(i, json)| delivery(i, json))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let ctx = PushContext {
                destination,
                config: grants.config_pairs()?,
                attempt,
            };
            let outcomes = adapter.push(&batch, &ctx).await?;
            for (d, o) in batch.iter().zip(&outcomes) {
                println!("{}", json!({"delivery": d.id, "outcome": o}));
            }
            print_counters(&adapter);
            Ok(())
        }
        PluginCommand::VerifyWebhook {
            file,
            grants,
            url,
            headers,
            body,
        } => {
            let adapter = load_adapter(&file, &grants).await?;
            let headers = headers
                .iter()
                .map(|h| match h.split_once(':') {
                    Some((n, v)) => Ok((n.trim().to_string(), v.trim().to_string())),
                    None => bail!("--header takes 'Name: value', got {h:?}"),
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let request = WebhookRequest {
                method: "POST".into(),
                url,
                headers,
                body: std::fs::read(&body)
                    .with_context(|| format!("reading {}", body.display()))?,
            };
            match adapter.verify_webhook(&request).await? {
                Ok(receipt) => {
                    println!("{}", serde_json::to_string_pretty(&receipt.events)?);
                    if let Some(answer) = receipt.answer {
                        eprintln!(
                            "answer the CRM expects ({}):\n{}",
                            answer.content_type,
                            String::from_utf8_lossy(&answer.body)
                        );
                    }
                    Ok(())
                }
                Err(e) => bail!("webhook refused: {e}"),
            }
        }
        PluginCommand::Transform {
            file,
            payload,
            config,
        } => {
            let plugin = load_transform(&file, &Config::load(None)?).await?;
            let config = config
                .iter()
                .map(|kv| split_pair(kv, "--config"))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let payload = std::fs::read(&payload)
                .with_context(|| format!("reading {}", payload.display()))?;
            let leads = plugin.transform(&payload, "cli", &config).await??;
            for lead in leads {
                println!("{lead}");
            }
            Ok(())
        }
    }
}

async fn describe(file: &Path, config: &Config) -> anyhow::Result<()> {
    let engine = crate::plugins::engine(&config.plugins)?;
    let compiled = compile(&engine, file, config).await?;
    let name = stem(file);
    let described = match describe_adapter(&engine, &name, &compiled, None).await {
        Ok(adapter) => {
            json!({"world": "crm-adapter", "hash": compiled.hash, "info": adapter.info()})
        }
        Err(adapter_err) => match describe_transform(&engine, &name, &compiled).await {
            Ok(t) => json!({"world": "source-transform", "hash": compiled.hash, "info": t.info()}),
            Err(transform_err) => bail!(
                "{} is neither an adapter ({adapter_err}) nor a transform ({transform_err})",
                file.display()
            ),
        },
    };
    println!("{}", serde_json::to_string_pretty(&described)?);
    Ok(())
}

async fn load_adapter(file: &Path, grants: &Grants) -> anyhow::Result<AdapterPlugin> {
    let config = Config::load(grants.limits_from.as_deref())?;
    let engine = crate::plugins::engine(&config.plugins)?;
    let compiled = compile(&engine, file, &config).await?;
    let probe = describe_adapter(&engine, &stem(file), &compiled, None)
        .await
        .with_context(|| format!("loading {} as an adapter", file.display()))?;
    let caps = grants.capabilities(&probe.info().default_hosts)?;
    Ok(probe.with_capabilities(caps))
}

async fn load_transform(file: &Path, config: &Config) -> anyhow::Result<TransformPlugin> {
    let engine = crate::plugins::engine(&config.plugins)?;
    let compiled = compile(&engine, file, config).await?;
    describe_transform(&engine, &stem(file), &compiled)
        .await
        .with_context(|| format!("loading {} as a transform", file.display()))
}

/// Compiles with the server's compiled-component cache, so trying a Python
/// or JavaScript component twice compiles it once.
async fn compile(engine: &PluginEngine, file: &Path, config: &Config) -> anyhow::Result<Compiled> {
    compile_file(engine, file, config.plugin_cache_dir().as_deref())
        .await
        .with_context(|| format!("loading {}", file.display()))
}

fn stem(file: &Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into())
}

/// A delivery from a JSON object of properties; the idempotency key is a
/// hash of them, so pushing the same properties twice is a retry.
fn delivery(index: usize, json: &str) -> anyhow::Result<Delivery> {
    let props: BTreeMap<String, Value> = serde_json::from_str(json)
        .with_context(|| format!("--properties #{}: not a JSON object", index + 1))?;
    let properties = props
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, v)
        })
        .collect::<Vec<_>>();
    let key = short_hash(serde_json::to_string(&properties)?.as_bytes());
    Ok(Delivery {
        id: format!("d{}", index + 1),
        idempotency_key: format!("cli/{key}"),
        properties,
    })
}

fn print_counters(adapter: &AdapterPlugin) {
    use std::sync::atomic::Ordering::Relaxed;
    let c = adapter.counters();
    eprintln!(
        "calls {} ({} failed), {} µs in the guest; http requests {} ({} refused, {} failed)",
        c.calls.load(Relaxed),
        c.call_failures.load(Relaxed),
        c.call_micros.load(Relaxed),
        c.http_requests.load(Relaxed),
        c.http_denied.load(Relaxed),
        c.http_failures.load(Relaxed),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_from_json_objects() {
        let d = delivery(0, r#"{"email":"a@b.co","score":7}"#).unwrap();
        assert_eq!(d.id, "d1");
        assert_eq!(
            d.properties,
            vec![
                ("email".to_string(), "a@b.co".to_string()),
                ("score".to_string(), "7".to_string())
            ]
        );
        let again = delivery(3, r#"{"score":7, "email":"a@b.co"}"#).unwrap();
        assert_eq!(d.idempotency_key, again.idempotency_key);
        assert!(delivery(0, "[1]").is_err());
    }

    #[test]
    fn pairs_need_a_key() {
        assert_eq!(
            split_pair("base-url=http://x=y", "--config").unwrap(),
            ("base-url".into(), "http://x=y".into())
        );
        assert!(split_pair("=v", "--config").is_err());
        assert!(split_pair("novalue", "--config").is_err());
    }
}
