//! AWS Signature Version 4 for Bedrock calls, computed by AWS's own signer (`aws-sigv4`, no
//! hand-written crypto): [`sign`] gives the headers a request needs (`authorization`,
//! `x-amz-date`, and `x-amz-security-token` for temporary credentials), and [`verify`] checks
//! a received request the way AWS does, for the mock upstream.
//!
//! What is signed: the method, the path and query (as sent, percent-encoded once; SigV4 encodes
//! them again for the canonical request, as AWS's SDKs do for every service but S3), `host`,
//! `x-amz-date`, the session token if any, the headers passed in (the body's
//! `content-type`), and the SHA-256 of the body.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use subtle::ConstantTimeEq;

/// The algorithm named in every `Authorization` header.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// One AWS key: an access key id, its secret, and a session token for temporary credentials.
#[derive(Clone, Copy)]
pub struct AwsKey<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
}

impl std::fmt::Debug for AwsKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Configured as a secret like the rest of the key: nothing of it is printed.
        f.write_str("AwsKey([REDACTED])")
    }
}

/// Where a signature is valid: the region and the service's signing name (`bedrock`).
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub region: &'a str,
    pub service: &'a str,
}

/// A request to sign: the URL must be absolute (`https://host/path?query`), already
/// percent-encoded.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub url: &'a str,
    /// Headers to sign besides `host`, `x-amz-date` and the session token.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// The headers a signed request carries, and the signature (hex) for tests and checks.
#[derive(Clone, PartialEq, Eq)]
pub struct Signed {
    /// `(name, value, sensitive)`: `authorization` and `x-amz-security-token` are sensitive.
    pub headers: Vec<(&'static str, String, bool)>,
    pub signature: String,
}

/// Header names only: the session token is a credential.
impl std::fmt::Debug for Signed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _, _)| *n).collect();
        f.debug_struct("Signed")
            .field("headers", &names)
            .finish_non_exhaustive()
    }
}

/// A request that could not be signed (a URL without a host, a header value SigV4 refuses).
#[derive(Debug, thiserror::Error)]
#[error("the request cannot be signed for AWS: {0}")]
pub struct SigningError(String);

/// Signs `request` with `key` for `scope` at `time`.
pub fn sign(
    key: AwsKey<'_>,
    scope: Scope<'_>,
    request: Request<'_>,
    time: SystemTime,
) -> Result<Signed, SigningError> {
    // The signer expects a host; a URL without one would make it panic.
    let has_host = request
        .url
        .parse::<axum::http::Uri>()
        .is_ok_and(|u| u.host().is_some_and(|h| !h.is_empty()));
    if !has_host {
        return Err(SigningError("the URL has no host".into()));
    }
    let identity: Identity = Credentials::new(
        key.access_key_id,
        key.secret_access_key,
        key.session_token.map(str::to_owned),
        None,
        "truckllm-config",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(scope.region)
        .name(scope.service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| SigningError(e.to_string()))?
        .into();
    let signable = SignableRequest::new(
        request.method,
        request.url,
        request.headers.iter().copied(),
        SignableBody::Bytes(request.body),
    )
    .map_err(|e| SigningError(e.to_string()))?;
    let (instructions, signature) = aws_sigv4::http_request::sign(signable, &params)
        .map_err(|e| SigningError(e.to_string()))?
        .into_parts();
    let (headers, _) = instructions.into_parts();
    let headers = headers
        .into_iter()
        .map(|h| {
            // The signer marks only the session token; the signature is a credential too.
            let sensitive = h.sensitive() || h.name() == "authorization";
            (h.name(), h.value().to_owned(), sensitive)
        })
        .collect();
    Ok(Signed { headers, signature })
}

/// Why AWS refuses a request's signature; the mock renders each as AWS does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No `Authorization` header, or one not in SigV4's form (`MissingAuthenticationToken`,
    /// `IncompleteSignature`).
    #[error("{0}")]
    Malformed(String),
    /// The access key id is not known (`UnrecognizedClientException`).
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    /// The signature does not match (`InvalidSignatureException`).
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
    )]
    Mismatch,
    /// `x-amz-date` is more than 15 minutes from the server's clock (`InvalidSignatureException`).
    #[error("Signature expired: {0} is now earlier or later than 15 minutes from the server time.")]
    Expired(String),
}

/// The parts of a SigV4 `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub access_key_id: &'a str,
    /// `yyyymmdd`
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    /// Lower-case names, `;`-separated in the header.
    pub signed_headers: Vec<&'a str>,
    pub signature: &'a str,
}

/// Parses `AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request,
/// SignedHeaders=a;b, Signature=hex`.
pub fn parse_authorization(value: &str) -> Result<Authorization<'_>, Refused> {
    let incomplete = |what: &str| {
        Refused::Malformed(format!("Authorization header requires '{what}' parameter."))
    };
    let rest = value
        .strip_prefix(ALGORITHM)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or_else(|| {
            Refused::Malformed(format!(
                "Authorization header requires the {ALGORITHM} algorithm"
            ))
        })?;
    let field = |name: &str| {
        rest.split(',')
            .map(str::trim)
            .find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
    };
    let credential = field("Credential").ok_or_else(|| incomplete("Credential"))?;
    let signed = field("SignedHeaders").ok_or_else(|| incomplete("SignedHeaders"))?;
    let signature = field("Signature").ok_or_else(|| incomplete("Signature"))?;
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, "aws4_request"] = parts[..] else {
        return Err(Refused::Malformed(
            "Credential should be scoped to a valid region, service and terminated by aws4_request."
                .into(),
        ));
    };
    let well_formed = signature.len() == 64 && signature.bytes().all(|b| b.is_ascii_hexdigit());
    if !well_formed || access_key_id.is_empty() || date.len() != 8 {
        return Err(incomplete("Signature"));
    }
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed.split(';').collect(),
        signature,
    })
}

/// A received request, as [`verify`] needs it.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    pub method: &'a str,
    /// `host` as received (the `Host` header or the HTTP/2 authority).
    pub host: &'a str,
    /// Path and query exactly as received.
    pub path_and_query: &'a str,
    /// Every header received, names lower-case.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// Checks a request's signature as AWS does: the header's form, `host` and `x-amz-date`
/// signed, the scope's service and date, the clock within 15 minutes of `now`, and the
/// signature recomputed with the secret `secret_of` gives for the access key id. Answers the
/// access key id.
pub fn verify<'a>(
    request: Received<'a>,
    service: &str,
    now: SystemTime,
    secret_of: impl Fn(&str) -> Option<String>,
) -> Result<&'a str, Refused> {
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    };
    let auth = header("authorization")
        .ok_or_else(|| Refused::Malformed("Missing Authentication Token".into()))?;
    let auth = parse_authorization(auth)?;
    for required in ["host", "x-amz-date"] {
        if !auth.signed_headers.contains(&required) {
            return Err(Refused::Malformed(format!(
                "'{required}' must be a signed header"
            )));
        }
    }
    if auth.service != service {
        return Err(Refused::Malformed(format!(
            "Credential should be scoped to correct service: '{service}'."
        )));
    }
    let amz_date = header("x-amz-date").ok_or_else(|| {
        Refused::Malformed(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
                .into(),
        )
    })?;
    let time = parse_amz_date(amz_date).ok_or_else(|| {
        Refused::Malformed(format!(
            "X-Amz-Date {amz_date:?} is not in the form 20150830T123600Z"
        ))
    })?;
    if !amz_date.starts_with(auth.date) {
        return Err(Refused::Malformed(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}'",
            auth.date,
            &amz_date[..8]
        )));
    }
    let skew = now
        .duration_since(time)
        .unwrap_or_else(|early| early.duration());
    if skew > Duration::from_secs(15 * 60) {
        return Err(Refused::Expired(amz_date.to_owned()));
    }
    let secret = secret_of(auth.access_key_id).ok_or(Refused::UnknownKey)?;
    let token = header("x-amz-security-token");
    let signed_token = auth.signed_headers.contains(&"x-amz-security-token");
    // Headers the signer adds itself are left out of what it is given.
    let mut others = Vec::new();
    for name in &auth.signed_headers {
        if matches!(*name, "x-amz-date" | "x-amz-security-token") {
            continue;
        }
        let value = header(name).ok_or_else(|| {
            Refused::Malformed(format!(
                "signed header '{name}' is missing from the request"
            ))
        })?;
        others.push((*name, value));
    }
    let url = format!("http://{}{}", request.host, request.path_and_query);
    let key = AwsKey {
        access_key_id: auth.access_key_id,
        secret_access_key: &secret,
        session_token: token.filter(|_| signed_token),
    };
    let scope = Scope {
        region: auth.region,
        service,
    };
    let expected = sign(
        key,
        scope,
        Request {
            method: request.method,
            url: &url,
            headers: &others,
            body: request.body,
        },
        time,
    )
    .map_err(|e| Refused::Malformed(e.to_string()))?;
    let same = expected
        .signature
        .as_bytes()
        .ct_eq(auth.signature.to_ascii_lowercase().as_bytes());
    if bool::from(same) {
        Ok(auth.access_key_id)
    } else {
        Err(Refused::Mismatch)
    }
}

/// `20150830T123600Z` as a time.
pub fn parse_amz_date(value: &str) -> Option<SystemTime> {
    let bytes = value.as_bytes();
    if bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = value.get(range)?;
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(9..11)?, number(11..13)?, number(13..15)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    //! Known answers from AWS's SigV4 test suite (`aws-sig-v4-test-suite`, also shipped in
    //! `aws-sigv4` as `aws-signing-test-suite/v4/`): AKIDEXAMPLE, 2015-08-30T12:36:00Z,
    //! us-east-1, service `service`, unsigned payload hash not sent.
    use super::*;

    const EXAMPLE: AwsKey<'static> = AwsKey {
        access_key_id: "AKIDEXAMPLE",
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        session_token: None,
    };
    const SCOPE: Scope<'static> = Scope {
        region: "us-east-1",
        service: "service",
    };

    fn suite_time() -> SystemTime {
        parse_amz_date("20150830T123600Z").expect("suite time")
    }

    fn header<'a>(signed: &'a Signed, name: &str) -> &'a str {
        signed
            .headers
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, v, _)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} header"))
    }

    fn suite(method: &str) -> Signed {
        let request = Request {
            method,
            url: "https://example.amazonaws.com/",
            headers: &[],
            body: b"",
        };
        sign(EXAMPLE, SCOPE, request, suite_time()).expect("signed")
    }

    #[test]
    fn get_vanilla_matches_the_aws_test_suite() {
        let signed = suite("GET");
        assert_eq!(
            header(&signed, "authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert_eq!(header(&signed, "x-amz-date"), "20150830T123600Z");
    }

    #[test]
    fn post_vanilla_matches_the_aws_test_suite() {
        let signed = suite("POST");
        assert_eq!(
            signed.signature,
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        );
        assert!(
            signed
                .headers
                .iter()
                .any(|(n, _, sensitive)| *n == "authorization" && *sensitive)
        );
    }

    #[test]
    fn get_vanilla_with_session_token_matches_the_aws_test_suite() {
        // aws-signing-test-suite/v4/get-vanilla-with-session-token.
        let key = AwsKey {
            session_token: Some("6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"),
            ..EXAMPLE
        };
        let request = Request {
            method: "GET",
            url: "https://example.amazonaws.com/",
            headers: &[],
            body: b"",
        };
        let signed = sign(key, SCOPE, request, suite_time()).expect("signed");
        assert_eq!(
            signed.signature,
            "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"
        );
        assert_eq!(
            header(&signed, "x-amz-security-token"),
            "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"
        );
    }

    fn received_from<'a>(
        signed: &'a Signed,
        extra: &'a [(&'a str, &'a str)],
    ) -> Vec<(&'a str, &'a str)> {
        let mut headers: Vec<(&str, &str)> = signed
            .headers
            .iter()
            .map(|(n, v, _)| (*n, v.as_str()))
            .collect();
        headers.extend_from_slice(extra);
        headers
    }

    fn bedrock_call(time: SystemTime, body: &[u8]) -> Signed {
        let key = AwsKey {
            access_key_id: "AKIDMOCK",
            secret_access_key: "mock-secret",
            session_token: Some("token"),
        };
        let scope = Scope {
            region: "eu-west-1",
            service: "bedrock",
        };
        let request = Request {
            method: "POST",
            url: "http://127.0.0.1:8080/model/anthropic.claude-v2%3A1/converse",
            headers: &[("content-type", "application/json")],
            body,
        };
        sign(key, scope, request, time).expect("signed")
    }

    #[test]
    fn verify_accepts_what_sign_made_and_refuses_any_change() {
        let time = suite_time();
        let body = br#"{"messages":[]}"#;
        let signed = bedrock_call(time, body);
        let extra = [
            ("host", "127.0.0.1:8080"),
            ("content-type", "application/json"),
        ];
        let headers = received_from(&signed, &extra);
        let received = Received {
            method: "POST",
            host: "127.0.0.1:8080",
            path_and_query: "/model/anthropic.claude-v2%3A1/converse",
            headers: &headers,
            body,
        };
        let secret = |id: &str| (id == "AKIDMOCK").then(|| "mock-secret".to_owned());
        assert_eq!(verify(received, "bedrock", time, secret), Ok("AKIDMOCK"));
        let tampered = Received {
            body: br#"{"messages":[1]}"#,
            ..received
        };
        assert_eq!(
            verify(tampered, "bedrock", time, secret),
            Err(Refused::Mismatch)
        );
        let wrong_secret = |_: &str| Some("other".to_owned());
        assert_eq!(
            verify(received, "bedrock", time, wrong_secret),
            Err(Refused::Mismatch)
        );
        assert_eq!(
            verify(received, "bedrock", time, |_| None),
            Err(Refused::UnknownKey)
        );
        let later = time + Duration::from_secs(16 * 60);
        assert!(matches!(
            verify(received, "bedrock", later, secret),
            Err(Refused::Expired(_))
        ));
        assert!(matches!(
            verify(received, "s3", time, secret),
            Err(Refused::Malformed(_))
        ));
    }

    #[test]
    fn authorization_headers_must_be_in_sigv4_form() {
        assert!(parse_authorization("Bearer x").is_err());
        assert!(
            parse_authorization("AWS4-HMAC-SHA256 Credential=A/20150830/r/s/aws4_request").is_err()
        );
        let sig = "a".repeat(64);
        let missing_scope = format!(
            "AWS4-HMAC-SHA256 Credential=A/20150830/r, SignedHeaders=host, Signature={sig}"
        );
        assert!(parse_authorization(&missing_scope).is_err());
        let ok = format!(
            "AWS4-HMAC-SHA256 Credential=A/20150830/r/s/aws4_request, SignedHeaders=host;x-amz-date, Signature={sig}"
        );
        let parsed = parse_authorization(&ok).expect("parsed");
        assert_eq!(parsed.signed_headers, ["host", "x-amz-date"]);
        assert_eq!((parsed.region, parsed.service), ("r", "s"));
    }

    #[test]
    fn amz_dates_parse_and_refuse_nonsense() {
        let t = parse_amz_date("20150830T123600Z").expect("date");
        assert_eq!(
            t.duration_since(UNIX_EPOCH).expect("after epoch").as_secs(),
            1_440_938_160
        );
        for bad in [
            "2015-08-30T12:36",
            "20151330T123600Z",
            "20150830T123600",
            "2015083OT123600Z",
        ] {
            assert!(parse_amz_date(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn keys_never_print() {
        let shown = format!("{EXAMPLE:?}");
        assert!(
            !shown.contains("AKID") && !shown.contains("wJal"),
            "{shown}"
        );
    }

    #[test]
    fn a_url_without_a_host_is_an_error_not_a_panic() {
        let request = Request {
            method: "POST",
            url: "/model/x/converse",
            headers: &[],
            body: b"",
        };
        assert!(sign(EXAMPLE, SCOPE, request, suite_time()).is_err());
    }
}
