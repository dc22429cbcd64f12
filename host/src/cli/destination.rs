//! `leadgate destination …`: operator actions on a destination of a
//! running host, through its HTTP API ([`crate::http::destinations`]).

use clap::Subcommand;

#[derive(Subcommand)]
pub enum DestinationCommand {
    /// Let a destination whose OAuth grant was refused (`invalid_grant`,
    /// a revoked refresh token) try again, once the authorization is
    /// renewed at the CRM; its waiting jobs then go out.
    Resume { name: String },
}

/// Runs a `destination` command against the host at `server`.
pub async fn run(server: &str, command: DestinationCommand) -> anyhow::Result<()> {
    let server = server.trim_end_matches('/');
    leadgate_runtime::outbound::install_crypto_provider();
    let client = reqwest::Client::new();
    match command {
        DestinationCommand::Resume { name } => {
            let url = reqwest::Url::parse(&format!("{server}/v1/destinations/"))?
                .join(&format!("{}/resume", urlencoding(&name)))?;
            let answer = super::dlq::call(client.post(url)).await?;
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
