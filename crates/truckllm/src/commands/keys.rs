//! `truckllm keys …` and `truckllm teams …`: the admin API of a running gateway from the
//! command line (`--admin-url`, `--admin-key` or `TRUCKLLM_ADMIN_KEY`). Tables by default,
//! the API's JSON with `--json`. A refusal prints the gateway's message and exits 1.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

use crate::cli::{AdminArgs, FieldArgs, KeysCommand, TeamsCommand};

pub async fn keys(admin: &AdminArgs, command: KeysCommand) -> Result<ExitCode> {
    let api = Api::new(admin)?;
    let answer = match command {
        KeysCommand::Create { id, fields } => {
            let mut body = fields.body()?;
            if let Some(id) = id {
                body.insert("id".into(), id.into());
            }
            api.call("POST", "/admin/keys", Some(Value::Object(body)))
                .await?
        }
        KeysCommand::List => api.call("GET", "/admin/keys", None).await?,
        KeysCommand::Show { id } => api.call("GET", &path("keys", &id, ""), None).await?,
        KeysCommand::Update { id, fields } => {
            let body = Some(Value::Object(fields.body()?));
            api.call("PATCH", &path("keys", &id, ""), body).await?
        }
        KeysCommand::Rotate { id, grace_secs } => {
            let body = Some(json!({ "grace_secs": grace_secs }));
            api.call("POST", &path("keys", &id, "/rotate"), body)
                .await?
        }
        KeysCommand::Revoke { id } => api.call("DELETE", &path("keys", &id, ""), None).await?,
        KeysCommand::Disable { id } => {
            api.call("POST", &path("keys", &id, "/disable"), None)
                .await?
        }
        KeysCommand::Enable { id } => {
            api.call("POST", &path("keys", &id, "/enable"), None)
                .await?
        }
    };
    Ok(print(admin.json, &answer, "keys", KEY_COLUMNS))
}

pub async fn teams(admin: &AdminArgs, command: TeamsCommand) -> Result<ExitCode> {
    let api = Api::new(admin)?;
    let answer = match command {
        TeamsCommand::Create { id, fields } => {
            let mut body = fields.body()?;
            body.insert("id".into(), id.into());
            api.call("POST", "/admin/teams", Some(Value::Object(body)))
                .await?
        }
        TeamsCommand::List => api.call("GET", "/admin/teams", None).await?,
        TeamsCommand::Show { id } => api.call("GET", &path("teams", &id, ""), None).await?,
        TeamsCommand::Update { id, fields } => {
            let body = Some(Value::Object(fields.body()?));
            api.call("PATCH", &path("teams", &id, ""), body).await?
        }
        TeamsCommand::Delete { id } => api.call("DELETE", &path("teams", &id, ""), None).await?,
    };
    Ok(print(admin.json, &answer, "teams", TEAM_COLUMNS))
}

const KEY_COLUMNS: &[&str] = &[
    "id",
    "status",
    "team",
    "expires_at",
    "allowed_models",
    "budget",
];
const TEAM_COLUMNS: &[&str] = &["id", "keys", "allowed_models", "limits", "budget"];

/// `/admin/{what}/{id}{rest}`, the id percent-encoded.
fn path(what: &str, id: &str, rest: &str) -> String {
    let encoded: String = id
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("/admin/{what}/{encoded}{rest}")
}

impl FieldArgs {
    /// The JSON object these flags stand for.
    fn body(&self) -> Result<Map<String, Value>> {
        let mut body = match &self.fields {
            Some(text) => match serde_json::from_str(text).context("--fields is not JSON")? {
                Value::Object(map) => map,
                _ => bail!("--fields must be a JSON object"),
            },
            None => Map::new(),
        };
        let mut set = |name: &str, value: Option<Value>| {
            if let Some(value) = value {
                body.insert(name.into(), value);
            }
        };
        set("team", self.team.clone().map(Value::from));
        set("expires_at", self.expires_at.clone().map(Value::from));
        set(
            "allowed_models",
            self.allowed_models.clone().map(Value::from),
        );
        set(
            "allowed_providers",
            self.allowed_providers.clone().map(Value::from),
        );
        if !self.metadata.is_empty() {
            let mut labels = Map::new();
            for pair in &self.metadata {
                let (name, value) = pair
                    .split_once('=')
                    .with_context(|| format!("--meta {pair}: write NAME=VALUE"))?;
                labels.insert(name.into(), value.into());
            }
            body.insert("metadata".into(), Value::Object(labels));
        }
        Ok(body)
    }
}

/// The admin API of one gateway.
struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    fn new(args: &AdminArgs) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .context("HTTP client")?;
        Ok(Self {
            http,
            base: args.admin_url.trim_end_matches('/').to_owned(),
            key: args
                .admin_key
                .clone()
                .context("no admin key: pass --admin-key or set TRUCKLLM_ADMIN_KEY")?,
        })
    }

    /// The answer's JSON, or the gateway's error message as the error.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let method: reqwest::Method = method.parse().context("method")?;
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = response.status();
        let text = response.text().await.context("reading the answer")?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let message = value["error"]["message"]
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            bail!("{method} {path}: {status}: {message}");
        }
        Ok(value)
    }
}

/// Prints an answer: its JSON, a table of a list, or one item's fields with its secret (shown
/// once) last.
fn print(json: bool, answer: &Value, list: &str, columns: &[&str]) -> ExitCode {
    if json {
        println!("{answer:#}");
        return ExitCode::SUCCESS;
    }
    match answer.get(list).and_then(Value::as_array) {
        Some(items) => print_table(items, columns),
        None => print_item(answer),
    }
    ExitCode::SUCCESS
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn print_table(items: &[Value], columns: &[&str]) {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| columns.iter().map(|c| cell(&item[*c])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(columns.iter().map(|c| c.to_uppercase()).collect());
    for row in rows {
        line(row);
    }
}

fn print_item(item: &Value) {
    let Some(map) = item.as_object() else {
        println!("{item}");
        return;
    };
    for (name, value) in map.iter().filter(|(name, _)| *name != "key") {
        println!("{name}: {}", cell(value));
    }
    if let Some(secret) = map.get("key").and_then(Value::as_str) {
        println!("key: {secret}");
        eprintln!("This secret is shown once: store it now. The gateway keeps only its SHA-256.");
    }
}
