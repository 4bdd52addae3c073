//! `truckllm config …`: validate, show, history, diff, rollback, backup, restore, and the
//! master-key commands (generate-key, encrypt-value, rotate-key).

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use truckllm_config::{
    ConfigStore, FileStoreOptions, MasterKey, ProcessEnv, SaveMeta, diff, load_str,
};
use truckllm_storage_http::open_config_store;
use zeroize::Zeroizing;

use crate::cli::ConfigCommand;

/// Environment variable holding the new key for `rotate-key`.
const NEW_KEY_ENV: &str = "TRUCKLLM_NEW_MASTER_KEY";

/// Which config store the commands act on: `--config-store`, else the `--config` file.
pub struct Target<'a> {
    pub path: &'a Path,
    pub store: Option<&'a str>,
    pub token: Option<String>,
}

impl Target<'_> {
    /// How the store is named in messages (a URL without its password).
    fn shown(&self) -> String {
        self.store.map_or_else(
            || self.path.display().to_string(),
            truckllm_store::redact_url,
        )
    }

    async fn open(&self, key: Option<Arc<MasterKey>>) -> Result<Arc<dyn ConfigStore>> {
        let options = FileStoreOptions {
            master_key: key,
            ..FileStoreOptions::default()
        };
        let path = self.path.display().to_string();
        let target = self.store.unwrap_or(&path);
        open_config_store(target, options, self.token.clone())
            .await
            .with_context(|| format!("cannot open the config store {}", self.shown()))
    }
}

pub async fn run(target: &Target<'_>, command: ConfigCommand) -> Result<ExitCode> {
    let path = target.path;
    match command {
        ConfigCommand::Validate { path: given } => validate(given.as_deref().unwrap_or(path)),
        ConfigCommand::Show { json } => show(target, json).await,
        ConfigCommand::History => history(target).await,
        ConfigCommand::Diff { from, to } => {
            let store = target.open(master_key()?).await?;
            print!("{}", diff(&store.get(from).await?, &store.get(to).await?));
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Rollback {
            version,
            author,
            force,
        } => {
            let store = target.open(master_key()?).await?;
            if !force {
                refuse_revival(store.as_ref(), version).await?;
            }
            let new = store.rollback(version, &author).await?;
            println!("version {version} is current again as version {new}");
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Backup { file } => {
            target.open(master_key()?).await?.backup(&file).await?;
            println!(
                "backed up {} and its history to {}",
                target.shown(),
                file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Restore { file } => {
            let version = target.open(master_key()?).await?.restore(&file).await?;
            println!("restored {} at version {version}", target.shown());
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Import { file, author } => import(target, &file, &author).await,
        ConfigCommand::GenerateKey => {
            println!("{}", MasterKey::generate().to_base64());
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::EncryptValue => encrypt_value(),
        ConfigCommand::RotateKey {
            new_key_file,
            author,
        } => rotate_key(target, new_key_file.as_deref(), &author).await,
        ConfigCommand::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&truckllm_config::json_schema())?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn master_key() -> Result<Option<Arc<MasterKey>>> {
    Ok(MasterKey::from_env()?.map(Arc::new))
}

/// Saves `file` as the store's next version; into an empty store, as its first.
async fn import(target: &Target<'_>, file: &Path, author: &str) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let store = target.open(master_key()?).await?;
    // A store that cannot load holds nothing yet (else the save below conflicts and says so).
    let current = store.load().await.map_or(0, |v| v.info.version);
    let meta = SaveMeta::new(author, format!("import {}", file.display()));
    let version = store
        .save_text(&text, current, meta)
        .await
        .with_context(|| format!("cannot import {}", file.display()))?;
    println!(
        "imported {} into {} as version {version}",
        file.display(),
        target.shown()
    );
    Ok(ExitCode::SUCCESS)
}

fn validate(path: &Path) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let key = master_key()?;
    let loaded = load_str(&text, &ProcessEnv, key.as_deref())
        .with_context(|| format!("{} is not valid", path.display()))?;
    let r = &loaded.resolved;
    let keys: usize = r.llm_providers.iter().map(|p| p.keys.len()).sum();
    println!(
        "ok: {} is valid ({} providers, {keys} provider keys, {} clients)",
        path.display(),
        r.llm_providers.len(),
        r.api_keys.len()
    );
    Ok(ExitCode::SUCCESS)
}

async fn show(target: &Target<'_>, json: bool) -> Result<ExitCode> {
    let current = target.open(master_key()?).await?.load().await?;
    let config = truckllm_config::parse(&current.text)?.redacted();
    if json {
        println!("{}", serde_json::to_string_pretty(&config)?);
    } else {
        println!("# version {}", current.info.version);
        print!("{}", serde_saphyr::to_string(&config)?);
    }
    Ok(ExitCode::SUCCESS)
}

async fn history(target: &Target<'_>) -> Result<ExitCode> {
    let store = target.open(master_key()?).await?;
    let current = store.load().await?.info.version;
    println!(
        "{:>8}  {:<24}  {:<12}  COMMENT",
        "VERSION", "SAVED (UTC)", "AUTHOR"
    );
    for info in store.versions().await? {
        let mark = if info.version == current { "*" } else { " " };
        println!(
            "{:>7}{mark}  {:<24}  {:<12}  {}",
            info.version,
            utc(info.time_ms),
            info.author,
            info.comment
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn encrypt_value() -> Result<ExitCode> {
    let key = MasterKey::from_env()?
        .context("set TRUCKLLM_MASTER_KEY (or TRUCKLLM_MASTER_KEY_FILE); make one with `truckllm config generate-key`")?;
    let mut plain = Zeroizing::new(String::new());
    std::io::stdin()
        .read_to_string(&mut plain)
        .context("cannot read stdin")?;
    let trimmed = plain.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        bail!("nothing to encrypt: pipe the secret on stdin");
    }
    println!("{}", key.encrypt(trimmed)?);
    Ok(ExitCode::SUCCESS)
}

async fn rotate_key(
    target: &Target<'_>,
    new_key_file: Option<&Path>,
    author: &str,
) -> Result<ExitCode> {
    let old = MasterKey::from_env()?.context("set TRUCKLLM_MASTER_KEY to the current key")?;
    let new = match new_key_file {
        Some(file) => MasterKey::from_file(file)?,
        None => MasterKey::from_base64(
            &std::env::var(NEW_KEY_ENV)
                .with_context(|| format!("give --new-key-file or set {NEW_KEY_ENV}"))?,
        )?,
    };
    let old_store = target.open(Some(Arc::new(old))).await?;
    let current = old_store.load().await?;
    let old_key = MasterKey::from_env()?.context("current key vanished")?;
    let (text, count) = reencrypt(&current.text, &old_key, &new)?;
    let new_store = target.open(Some(Arc::new(new))).await?;
    let meta = SaveMeta::new(author, format!("rotate master key ({count} values)"));
    let version = new_store
        .save_text(&text, current.info.version, meta)
        .await?;
    println!(
        "re-encrypted {count} values as version {version}; now set TRUCKLLM_MASTER_KEY to the new key"
    );
    Ok(ExitCode::SUCCESS)
}

/// Replaces every `enc:v1:` value in the text, keeping everything else (comments included).
/// A token too short to hold a nonce and a tag (base64 of 28 bytes) is prose, not a value.
fn reencrypt(text: &str, old: &MasterKey, new: &MasterKey) -> Result<(String, usize)> {
    const PREFIX: &str = truckllm_config::secret::ENC_PREFIX;
    const MIN_VALUE_CHARS: usize = 38;
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut count = 0;
    while let Some(start) = rest.find(PREFIX) {
        out.push_str(&rest[..start]);
        let token_len = rest[start + PREFIX.len()..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=')))
            .map_or(rest.len() - start, |n| n + PREFIX.len());
        let token = &rest[start..start + token_len];
        if token_len - PREFIX.len() < MIN_VALUE_CHARS {
            out.push_str(token);
            rest = &rest[start + token_len..];
            continue;
        }
        let plain = old
            .decrypt(token)
            .context("cannot decrypt a value with the current key")?;
        out.push_str(&new.encrypt(&plain)?);
        count += 1;
        rest = &rest[start + token_len..];
    }
    out.push_str(rest);
    Ok((out, count))
}

/// `YYYY-MM-DD HH:MM:SS` for Unix milliseconds (UTC), without a date crate.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (H. Hinnant), valid for the Unix era.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Fails, naming the key ids, when rolling back to `version` would let in again keys that
/// the current version revoked, disabled or rotated (see
/// [`truckllm_config::governance::revived_by_rollback`]).
async fn refuse_revival(store: &dyn truckllm_config::ConfigStore, version: u64) -> Result<()> {
    let (target, current) = (store.get(version).await?, store.load().await?);
    let (Ok(target), Ok(current)) = (
        truckllm_config::parse(&target.text),
        truckllm_config::parse(&current.text),
    ) else {
        return Ok(());
    };
    let revived = truckllm_config::governance::revived_by_rollback(
        &target,
        &current,
        truckllm_config::governance::now_ms(),
    );
    anyhow::ensure!(
        revived.is_empty(),
        "rolling back to version {version} would let in again {revived}, revoked, disabled, given a new secret or an earlier expiry since (or written differently), or no longer open to anyone; revoke them again after the rollback, or pass --force to roll back anyway"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_795_000_000_000), "2026-11-18 11:06:40"); // as `date -u -d @1795000000`
    }
}
