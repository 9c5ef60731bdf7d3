//! `prom keys …` and `prom audit`: the key lifecycle and the audit log, against a server.

use reqwest::Method;
use serde_json::{Value, json};

use super::client::{ApiClient, Credential, SavedSession};
use crate::cli::{AuditArgs, KeysCommand, OutputArgs};
use crate::output::{field, table};

async fn signed_in() -> anyhow::Result<(ApiClient, SavedSession)> {
    let session = SavedSession::load()?;
    Ok((ApiClient::new(&session.server)?, session))
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn path_segment(id: &str) -> String {
    // Ids are UUIDs; anything else is sent escaped and the server answers NOT_FOUND.
    id.chars()
        .map(
            |c| if c.is_ascii_alphanumeric() || c == '-' { c.to_string() } else { format!("%{:02X}", c as u32 & 0xff) },
        )
        .collect()
}

pub async fn run(command: KeysCommand) -> anyhow::Result<()> {
    let (client, session) = signed_in().await?;
    let auth = Credential::Session(&session.token);
    match command {
        KeysCommand::Create { label, environment, output } => {
            let body = json!({ "label": label, "environment": environment });
            let created = client.call(Method::POST, "/v1/keys", auth, Some(body)).await?;
            print_created(&created, output)
        }
        KeysCommand::List { output } => {
            let list = client.call(Method::GET, "/v1/keys", auth, None).await?;
            if output.json {
                return print_json(&list);
            }
            let keys = list.get("keys").and_then(Value::as_array).cloned().unwrap_or_default();
            if keys.is_empty() {
                println!("No keys yet. Create one with: prom keys create --label my-agent");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|k| {
                    vec![
                        field(k, "id"),
                        field(k, "display"),
                        field(k, "label"),
                        field(k, "status"),
                        field(k, "created_at"),
                        field(k, "last_used_at"),
                    ]
                })
                .collect();
            table(&["ID", "KEY", "LABEL", "STATUS", "CREATED", "LAST USED"], &rows);
            Ok(())
        }
        KeysCommand::Revoke { id, output } => {
            let key = client.call(Method::POST, &format!("/v1/keys/{}/revoke", path_segment(&id)), auth, None).await?;
            if output.json {
                return print_json(&key);
            }
            println!("Revoked {} ({}). Requests with it now get 401.", field(&key, "display"), field(&key, "label"));
            Ok(())
        }
        KeysCommand::Delete { id } => {
            client.call(Method::DELETE, &format!("/v1/keys/{}", path_segment(&id)), auth, None).await?;
            println!("Deleted key {id}. Its audit history is kept.");
            Ok(())
        }
        KeysCommand::Rotate { id, label, grace, output } => {
            let body = json!({ "label": label, "expire_old_after_seconds": grace });
            let rotated =
                client.call(Method::POST, &format!("/v1/keys/{}/rotate", path_segment(&id)), auth, Some(body)).await?;
            print_created(&rotated, output)?;
            if !output.json {
                let replaced = rotated.get("replaced").cloned().unwrap_or_default();
                match grace.filter(|g| *g > 0) {
                    Some(_) => println!(
                        "The old key {} keeps working until {}: switch your agents over before then.",
                        field(&replaced, "display"),
                        field(&replaced, "expires_at")
                    ),
                    None => println!("The old key {} has stopped working.", field(&replaced, "display")),
                }
            }
            Ok(())
        }
    }
}

fn print_created(created: &Value, output: OutputArgs) -> anyhow::Result<()> {
    if output.json {
        return print_json(created);
    }
    println!("Created API key \"{}\" (id {}).", field(created, "label"), field(created, "id"));
    println!();
    println!("    {}", field(created, "key"));
    println!();
    println!("This is the only time the key is shown: store it now, e.g. as PROMETHEUS_API_KEY for your agent.");
    println!("It will be listed as {}.", field(created, "display"));
    Ok(())
}

pub async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    let (client, session) = signed_in().await?;
    let mut query = vec![format!("limit={}", args.limit)];
    if let Some(action) = &args.action {
        query.push(format!("action={}", path_segment(action).replace("%2E", ".")));
    }
    if let Some(key_id) = &args.key_id {
        query.push(format!("key_id={}", path_segment(key_id)));
    }
    if let Some(before) = args.before {
        query.push(format!("before={before}"));
    }
    let path = format!("/v1/audit?{}", query.join("&"));
    let log = client.call(Method::GET, &path, Credential::Session(&session.token), None).await?;
    if args.output.json {
        return print_json(&log);
    }
    let events = log.get("events").and_then(Value::as_array).cloned().unwrap_or_default();
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let actor = e.get("actor").cloned().unwrap_or_default();
            let target = e.get("target").cloned().unwrap_or_default();
            let target = match (field(&target, "label"), field(&target, "id")) {
                (label, _) if label != "-" => label,
                (_, id) => id,
            };
            let actor = match field(&actor, "name") {
                name if name != "-" => name,
                _ => field(&actor, "type"),
            };
            vec![field(e, "at"), field(e, "action"), actor, target, field(e, "ip")]
        })
        .collect();
    table(&["AT", "ACTION", "ACTOR", "TARGET", "IP"], &rows);
    if let Some(next) = log.get("next_before").and_then(Value::as_i64) {
        println!("(more: prom audit --before {next})");
    }
    Ok(())
}
