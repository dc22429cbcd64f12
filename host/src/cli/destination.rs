//! `leadgate destination …`: operator actions on a destination of a
//! running host, through its HTTP API ([`crate::http::destinations`]).

use clap::Subcommand;

use super::api::{Api, call};

#[derive(Subcommand)]
pub enum DestinationCommand {
    /// Let a destination whose OAuth grant was refused (`invalid_grant`,
    /// a revoked refresh token) try again, once the authorization is
    /// renewed at the CRM; its waiting jobs then go out.
    Resume { name: String },
}

/// Runs a `destination` command against a host's API.
pub async fn run(api: Api, command: DestinationCommand) -> anyhow::Result<()> {
    match command {
        DestinationCommand::Resume { name } => {
            let url = reqwest::Url::parse(&api.url("/v1/destinations/"))?
                .join(&format!("{}/resume", urlencoding(&name)))?;
            let answer = call(api.client.post(url)).await?;
            match (answer["oauth"].as_bool(), answer["was_paused"].as_bool()) {
                (Some(false), _) => println!("{name}: no OAuth grant to resume"),
                (_, Some(true)) => println!("{name}: resumed; the token endpoint is called again"),
                _ => println!("{name}: was not paused"),
            }
        }
    }
    Ok(())
}

/// A destination name as one path segment.
fn urlencoding(name: &str) -> String {
    form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
