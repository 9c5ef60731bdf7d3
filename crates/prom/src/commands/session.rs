//! `prom login`, `prom logout`, `prom whoami`.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::json;

use super::client::{ApiClient, ApiFailure, Credential, SavedSession};
use crate::cli::{LoginArgs, WhoamiArgs};
use crate::output;

pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.server)?;
    let email = match args.email {
        Some(email) => email,
        None => {
            eprint!("E-mail: ");
            std::io::stderr().flush()?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim().to_owned()
        }
    };
    let password = if args.password_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        rpassword::prompt_password("Password: ")?
    };
    if password.is_empty() {
        bail!("no password was given");
    }
    let body = json!({ "email": email, "password": password, "tenant": args.tenant });
    let response = client.call(Method::POST, "/v1/auth/login", Credential::None, Some(body)).await?;
    let field = |name: &str| response.get(name).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    let session = SavedSession {
        server: args.server.trim_end_matches('/').to_owned(),
        token: field("token"),
        email: field("email"),
        tenant: field("tenant"),
        expires_at: field("expires_at"),
    };
    let path = session.save()?;
    println!(
        "Signed in to {} as {} ({} of tenant {}) until {}.",
        session.server,
        session.email,
        field("role"),
        session.tenant,
        session.expires_at
    );
    println!("Session saved in {}.", path.display());
    Ok(())
}

pub async fn logout() -> anyhow::Result<()> {
    let session = match SavedSession::load() {
        Ok(session) => session,
        Err(_) => {
            println!("Not signed in.");
            return Ok(());
        }
    };
    let client = ApiClient::new(&session.server)?;
    let result = client.call(Method::POST, "/v1/auth/logout", Credential::Session(&session.token), None).await;
    SavedSession::forget()?;
    match result {
        Ok(_) => println!("Signed out of {}.", session.server),
        Err(err) if err.downcast_ref::<ApiFailure>().is_some() => {
            println!("Signed out (the session had already ended).")
        }
        Err(err) => return Err(err.context("the saved session was removed, but the server could not be told")),
    }
    Ok(())
}

/// The agent key from the environment, as MCP hosts pass it.
pub fn agent_key_from_env() -> Option<String> {
    ["PROMETHEUS_API_KEY", "AGENT_TOKEN"]
        .into_iter()
        .filter_map(|name| std::env::var(name).ok())
        .map(|value| value.trim().to_owned())
        .find(|value| !value.is_empty())
}

pub async fn whoami(args: WhoamiArgs) -> anyhow::Result<()> {
    let Some(key) = agent_key_from_env() else {
        return Err(ApiFailure {
            code: "TOKEN_MISSING".into(),
            message: "no API key: set PROMETHEUS_API_KEY (or AGENT_TOKEN) to the agent's key".into(),
        }
        .into());
    };
    let server = match args.server {
        Some(server) => server,
        None => SavedSession::load().map_or_else(|_| "http://127.0.0.1:7070".to_owned(), |s| s.server),
    };
    let client = ApiClient::new(&server)?;
    let response = client.call(Method::GET, "/v1/whoami", Credential::ApiKey(&key), None).await?;
    if args.output.json {
        println!("{}", serde_json::to_string_pretty(&response)?);
        return Ok(());
    }
    let tenant = response.get("tenant").cloned().unwrap_or_default();
    println!("key        {} ({})", output::field(&response, "display"), output::field(&response, "key_id"));
    println!("label      {}", output::field(&response, "label"));
    println!("tenant     {}", output::field(&tenant, "slug"));
    println!("environment {}", output::field(&response, "environment"));
    let scopes = response.get("scopes").map(ToString::to_string).unwrap_or_default();
    println!("scopes     {scopes}");
    Ok(())
}
