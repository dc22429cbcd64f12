//! `leadgate dlq …`: the dead-letter queue of a running host, through its
//! HTTP API ([`crate::http::dlq`]), so the CLI and the API can never disagree.

use anyhow::bail;
use clap::Subcommand;
use serde_json::{Value, json};

use super::api::{Api, call};

#[derive(Subcommand)]
pub enum DlqCommand {
    /// List dead letters, newest first.
    List {
        #[arg(long)]
        destination: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print the JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter: its payload, every attempt and error.
    Show { job: String },
    /// Put dead letters back in the queue (idempotent).
    Replay {
        #[command(flatten)]
        selection: Selection,
        /// Map again from the person's current record with the current
        /// mapping, instead of the payload the job was made with.
        #[arg(long)]
        current_mapping: bool,
    },
    /// Take dead letters out of the queue for good.
    Discard {
        #[command(flatten)]
        selection: Selection,
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: String,
    },
}

/// Which dead letters a replay or discard acts on.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Selection {
    /// Job ids (see `list`).
    pub jobs: Vec<String>,
    /// Every dead letter (of --destination, if given).
    #[arg(long, conflicts_with = "jobs")]
    pub all: bool,
    #[arg(long, requires = "all")]
    pub destination: Option<String>,
}

impl Selection {
    /// The API's selection body.
    fn body(self) -> anyhow::Result<Value> {
        if self.jobs.is_empty() && !self.all {
            bail!("name the jobs, or give --all");
        }
        Ok(if self.all {
            json!({"all": true, "destination": self.destination})
        } else {
            json!({ "ids": self.jobs })
        })
    }
}

/// Runs a `dlq` command against a host's API.
pub async fn run(api: Api, command: DlqCommand) -> anyhow::Result<()> {
    let Api { server, client } = api;
    match command {
        DlqCommand::List {
            destination,
            limit,
            json,
        } => {
            let mut url = reqwest::Url::parse(&format!("{server}/v1/dead-letters"))?;
            url.query_pairs_mut()
                .append_pair("limit", &limit.to_string());
            if let Some(d) = &destination {
                url.query_pairs_mut().append_pair("destination", d);
            }
            let answer = call(client.get(url)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                print!("{}", table(&answer));
            }
        }
        DlqCommand::Show { job } => {
            let answer = call(client.get(format!("{server}/v1/dead-letters/{job}"))).await?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        DlqCommand::Replay {
            selection,
            current_mapping,
        } => {
            let mut body = selection.body()?;
            body["mapping"] = json!(if current_mapping {
                "current"
            } else {
                "original"
            });
            let answer = call(
                client
                    .post(format!("{server}/v1/dead-letters/replay"))
                    .json(&body),
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        DlqCommand::Discard { selection, reason } => {
            let mut body = selection.body()?;
            body["reason"] = json!(reason);
            let answer = call(
                client
                    .post(format!("{server}/v1/dead-letters/discard"))
                    .json(&body),
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
    }
    Ok(())
}

/// One line per dead letter: job, destination, attempts, age of the last
/// error.
fn table(answer: &Value) -> String {
    let mut out = String::new();
    let items = answer["dead_letters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if items.is_empty() {
        out.push_str("no dead letters\n");
        return out;
    }
    out.push_str(&format!(
        "{:<48} {:<12} {:>8}  {}\n",
        "JOB", "DESTINATION", "ATTEMPTS", "LAST ERROR"
    ));
    for item in items {
        let job = &item["job"];
        let error: String = job["last_error"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(100)
            .collect();
        out.push_str(&format!(
            "{:<48} {:<12} {:>8}  {}\n",
            job["id"].as_str().unwrap_or(""),
            job["destination"].as_str().unwrap_or(""),
            job["attempts"],
            error
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_and_table() {
        let select = |jobs: Vec<String>, all, destination| Selection {
            jobs,
            all,
            destination,
        };
        assert!(select(vec![], false, None).body().is_err());
        assert_eq!(
            select(vec!["a".into()], false, None).body().unwrap(),
            json!({"ids": ["a"]})
        );
        assert_eq!(
            select(vec![], true, Some("hubspot".into())).body().unwrap(),
            json!({"all": true, "destination": "hubspot"})
        );
        let t = table(&json!({"dead_letters": [
            {"lead_id": "L", "job": {"id": "L:hubspot", "destination": "hubspot", "attempts": 8,
                                     "last_error": "gave up after 8 attempts: 503"}}]}));
        assert!(t.contains("L:hubspot") && t.contains("gave up"), "{t}");
        assert_eq!(table(&json!({"dead_letters": []})), "no dead letters\n");
    }
}
