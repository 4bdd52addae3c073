//! Secrets: a string type that never prints itself, and `enc:v1:` encryption at rest.
//!
//! A [`Secret`] holds what the file says: a `${ENV}` reference, an `enc:v1:…` value, or (not
//! recommended) a literal. Debug and Display print references as written (with any
//! `:-default` hidden) and everything else as `[REDACTED]`, so logs, errors and `config show`
//! never leak a secret. Memory is zeroed on drop. [`shown`] does the same for any string that
//! is not a secret field: reference defaults and URL passwords become `[REDACTED]`.
//!
//! `enc:v1:` values are AES-256-GCM: `enc:v1:` + base64(12-byte nonce ‖ ciphertext ‖ tag), with a
//! fixed associated data string. The 32-byte master key comes from `TRUCKLLM_MASTER_KEY`
//! (base64) or from the file named by `TRUCKLLM_MASTER_KEY_FILE`; values are decrypted only in
//! memory.

use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, Generate, Key, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::ConfigError;

/// What a hidden value prints as.
pub const REDACTED: &str = "[REDACTED]";
/// Prefix of encrypted values.
pub const ENC_PREFIX: &str = "enc:v1:";
/// Environment variable holding the base64 master key.
pub const MASTER_KEY_ENV: &str = "TRUCKLLM_MASTER_KEY";
/// Environment variable naming a file that holds the base64 master key.
pub const MASTER_KEY_FILE_ENV: &str = "TRUCKLLM_MASTER_KEY_FILE";

const AAD: &[u8] = b"truckllm-config-secret-v1";
const NONCE_LEN: usize = 12;

/// A secret string, redacted when printed.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Secret(#[schemars(with = "String")] Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The value itself. Call only where the secret is used (an upstream header, a hash).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is only `${ENV}` references (no literal text around them) or an
    /// `enc:` value: safe to show once reference defaults are hidden.
    pub fn is_reference(&self) -> bool {
        let v = self.0.as_str();
        v.starts_with(ENC_PREFIX) || (v.contains("${") && only_references(v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_reference() {
            f.write_str(&shown(&self.0))
        } else {
            f.write_str(REDACTED)
        }
    }
}

/// Whether `text` holds nothing but `${…}` references (and no `$${` escapes).
fn only_references(text: &str) -> bool {
    let mut literal = false;
    crate::interpolate::map_references(text, &mut |_| String::new(), &mut |piece| {
        literal |= !piece.is_empty();
        String::new()
    });
    !literal
}

/// A non-secret string as it may be shown: each reference's `:-default` (when not empty) and
/// the password of each URL (`redis://:pass@host`) replaced by `[REDACTED]`.
pub fn shown(text: &str) -> String {
    let references = crate::interpolate::map_references(
        text,
        &mut |inner| match inner.split_once(":-") {
            Some((name, default)) if !default.is_empty() => format!("${{{name}:-{REDACTED}}}"),
            _ => format!("${{{inner}}}"),
        },
        &mut str::to_owned,
    );
    redact_url_passwords(&references)
}

/// Replaces the password of every `scheme://user:password@host` in `text` by `[REDACTED]`.
/// Errs on the side of hiding: the userinfo runs to the last `@` before whitespace.
pub fn redact_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(char::is_whitespace).unwrap_or(tail.len());
        let (word, after) = tail.split_at(end);
        match word.rfind('@').map(|at| word.split_at(at)) {
            Some((userinfo, host)) => {
                match userinfo.split_once(':') {
                    Some((user, password)) if !password.is_empty() => {
                        out.push_str(user);
                        out.push(':');
                        out.push_str(REDACTED);
                    }
                    _ => out.push_str(userinfo),
                }
                out.push_str(&redact_query_secrets(host));
            }
            None => out.push_str(&redact_query_secrets(word)),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Query parameters whose values are credentials (`postgres://h/db?password=…`,
/// `https://hook?token=…`), matched without regard to case.
const SECRET_PARAMS: [&str; 11] = [
    "password",
    "passwd",
    "pwd",
    "token",
    "access_token",
    "key",
    "api_key",
    "apikey",
    "secret",
    "sig",
    "signature",
];

/// A URL's tail (host, path, query) with the values of [`SECRET_PARAMS`] replaced by
/// `[REDACTED]`.
fn redact_query_secrets(tail: &str) -> String {
    let Some((before, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value))
                if !value.is_empty()
                    && SECRET_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(name)) =>
            {
                format!("{name}={REDACTED}")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{before}?{}", pairs.join("&"))
}

/// Parses a SHA-256 written as 64 hex digits (a stored key or token hash).
pub fn parse_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// 32 bytes from the operating system's random source (through the AEAD crate's generator,
/// which the master key uses too), for secrets such as generated client keys.
pub fn random_bytes() -> [u8; 32] {
    let key = Key::<Aes256Gcm>::generate();
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(key.as_slice());
    bytes
}

/// The AES-256 key that encrypts `enc:v1:` values.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let key = Key::<Aes256Gcm>::generate();
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(key.as_slice());
        Self(bytes)
    }

    /// Parses the base64 form (32 bytes once decoded).
    pub fn from_base64(text: &str) -> Result<Self, ConfigError> {
        let decoded = Zeroizing::new(
            BASE64
                .decode(text.trim())
                .map_err(|_| ConfigError::Crypto("master key is not valid base64".into()))?,
        );
        let bytes: [u8; 32] = decoded.as_slice().try_into().map_err(|_| {
            ConfigError::Crypto(format!(
                "master key must be 32 bytes, got {}",
                decoded.len()
            ))
        })?;
        Ok(Self(Zeroizing::new(bytes)))
    }

    /// Reads the key from a file holding its base64 form.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            ConfigError::Crypto(format!(
                "cannot read master key file {}: {e}",
                path.display()
            ))
        })?);
        Self::from_base64(&text)
    }

    /// The key from `TRUCKLLM_MASTER_KEY` or `TRUCKLLM_MASTER_KEY_FILE`, if either is set.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        if let Ok(text) = std::env::var(MASTER_KEY_ENV) {
            return Self::from_base64(&text).map(Some);
        }
        match std::env::var_os(MASTER_KEY_FILE_ENV) {
            Some(path) => Self::from_file(Path::new(&path)).map(Some),
            None => Ok(None),
        }
    }

    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0.as_slice())
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&Key::<Aes256Gcm>::from(*self.0))
    }

    /// Encrypts `plaintext` into an `enc:v1:` value.
    pub fn encrypt(&self, plaintext: &str) -> Result<String, ConfigError> {
        let nonce = Nonce::generate();
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: AAD,
        };
        let ciphertext = self
            .cipher()
            .encrypt(&nonce, payload)
            .map_err(|_| ConfigError::Crypto("encryption failed".into()))?;
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(nonce.as_slice());
        blob.extend_from_slice(&ciphertext);
        Ok(format!("{ENC_PREFIX}{}", BASE64.encode(blob)))
    }

    /// Decrypts an `enc:v1:` value. A wrong key or a damaged value is a clear error.
    pub fn decrypt(&self, value: &str) -> Result<Zeroizing<String>, ConfigError> {
        let encoded = value
            .strip_prefix(ENC_PREFIX)
            .ok_or_else(|| ConfigError::Crypto("value does not start with enc:v1:".into()))?;
        let blob = BASE64
            .decode(encoded)
            .map_err(|_| ConfigError::Crypto("encrypted value is not valid base64".into()))?;
        if blob.len() <= NONCE_LEN {
            return Err(ConfigError::Crypto("encrypted value is too short".into()));
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce)
            .map_err(|_| ConfigError::Crypto("encrypted value has a bad nonce".into()))?;
        let payload = Payload {
            msg: ciphertext,
            aad: AAD,
        };
        let plain = self.cipher().decrypt(&nonce, payload).map_err(|_| {
            ConfigError::Crypto("cannot decrypt: wrong master key, or the value was damaged".into())
        })?;
        String::from_utf8(plain)
            .map(Zeroizing::new)
            .map_err(|_| ConfigError::Crypto("decrypted value is not UTF-8".into()))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn credentials_in_query_strings_are_hidden_and_the_rest_kept() {
        assert_eq!(
            redact_url_passwords("postgres://u@db:5432/app?sslmode=require&password=hunter2"),
            "postgres://u@db:5432/app?sslmode=require&password=[REDACTED]"
        );
        assert_eq!(
            redact_url_passwords("https://hooks.example/x?Token=abc&team=ops"),
            "https://hooks.example/x?Token=[REDACTED]&team=ops"
        );
        assert_eq!(
            redact_url_passwords("redis://:pw@h:6379/0?key=s"),
            "redis://:[REDACTED]@h:6379/0?key=[REDACTED]"
        );
        assert_eq!(redact_url_passwords("http://h/p?q=1"), "http://h/p?q=1");
    }

    use super::*;

    #[test]
    fn values_round_trip_and_a_wrong_key_is_a_clear_error() {
        let key = MasterKey::generate();
        let value = key.encrypt("sk-live-123").expect("encrypt");
        assert!(value.starts_with(ENC_PREFIX));
        assert!(!value.contains("sk-live"));
        assert_eq!(
            key.decrypt(&value).expect("decrypt").as_str(),
            "sk-live-123"
        );
        assert_ne!(
            key.encrypt("sk-live-123").expect("encrypt"),
            value,
            "fresh nonce each time"
        );

        let other = MasterKey::generate();
        let err = other.decrypt(&value).expect_err("wrong key");
        assert!(err.to_string().contains("wrong master key"), "{err}");
        let mut damaged = value.clone();
        damaged.pop();
        damaged.push(if value.ends_with('A') { 'B' } else { 'A' });
        assert!(key.decrypt(&damaged).is_err());
        assert!(MasterKey::from_base64("short").is_err());
        let again = MasterKey::from_base64(&key.to_base64()).expect("base64 round trip");
        assert_eq!(
            again.decrypt(&value).expect("decrypt").as_str(),
            "sk-live-123"
        );
    }

    #[test]
    fn secrets_print_redacted_unless_they_are_references() {
        assert_eq!(format!("{:?}", Secret::new("sk-123")), "[REDACTED]");
        assert_eq!(Secret::new("sk-123").to_string(), "[REDACTED]");
        assert_eq!(Secret::new("${OPENAI_KEY}").to_string(), "${OPENAI_KEY}");
        assert_eq!(Secret::new("enc:v1:abc").to_string(), "enc:v1:abc");
        assert_eq!(Secret::new("${A}${B}").to_string(), "${A}${B}");
        assert_eq!(Secret::new("${A:-}").to_string(), "${A:-}");
        assert_eq!(
            Secret::new("${ADMIN:-letmein}").to_string(),
            "${ADMIN:-[REDACTED]}"
        );
        assert_eq!(Secret::new("${A}sk-literal${B}").to_string(), "[REDACTED]");
        assert_eq!(Secret::new("$${A}").to_string(), "[REDACTED]");
    }

    #[test]
    fn shown_hides_defaults_and_url_passwords() {
        assert_eq!(
            shown("redis://:pass@host:6379/0"),
            "redis://:[REDACTED]@host:6379/0"
        );
        assert_eq!(shown("rediss://user:pa/ss@h"), "rediss://user:[REDACTED]@h");
        assert_eq!(shown("redis://user@h"), "redis://user@h");
        assert_eq!(
            shown("https://api.openai.com/v1"),
            "https://api.openai.com/v1"
        );
        assert_eq!(
            shown("${REDIS_URL:-redis://:pass@h}"),
            "${REDIS_URL:-[REDACTED]}"
        );
        assert_eq!(shown("x${A}y$${B}"), "x${A}y$${B}");
        assert_eq!(shown("${A:-}"), "${A:-}");
        assert_eq!(shown("${open"), "${open");
        assert_eq!(shown("redis://:pw${X}@h"), "redis://:[REDACTED]@h");
    }
}
