//! `webhooks`: HTTP tools. A tool call is POSTed to the tool's URL as a Standard Webhooks message
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature`: HMAC-SHA256 with the tool's secret),
//! waited for at most the tool's timeout, and its answer read up to a size cap; every way that can
//! go wrong is a `CallError` the caller stores as the call's result.
//!
//! The deployment's policy (`UrlPolicy`) decides where calls may go: URL prefixes it allows, and
//! never a loopback, private, link-local or otherwise non-public address — checked on the URL when
//! a tool is declared, and on every address a host name resolves to when it is called (a name that
//! later points inside is refused too) — unless private addresses are allowed (a dev flag).
//! Redirects are not followed.
//!
//! Architecture invariant: this crate knows HTTP and the signature, not the product's types,
//! DynamoDB or the model. It never logs a URL, a secret, arguments or an answer.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Where HTTP tools may be called.
#[derive(Clone, Debug, Default)]
pub struct UrlPolicy {
    /// URL prefixes a tool's URL must start with (`TOOLS_ALLOWED_URLS`); empty: any `https` URL
    /// (and `http` too when private addresses are allowed).
    pub allowed_prefixes: Vec<String>,
    /// Loopback and private addresses allowed (`TOOLS_ALLOW_PRIVATE_URLS`, for local development).
    pub allow_private: bool,
}

impl UrlPolicy {
    /// Why a tool may not have this URL, if it may not.
    pub fn check(&self, url: &str) -> Result<(), String> {
        let parsed = url::Url::parse(url).map_err(|_| "is not a valid URL".to_owned())?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("must not carry credentials".to_owned());
        }
        if self.allowed_prefixes.is_empty() {
            // Plain http only in development (private addresses allowed), e.g. a tool on loopback.
            if parsed.scheme() != "https" && !(self.allow_private && parsed.scheme() == "http") {
                return Err("must be an https URL".to_owned());
            }
        } else if !self.allowed_prefixes.iter().any(|prefix| url.starts_with(prefix.as_str())) {
            return Err("is not on the deployment's allow-list (TOOLS_ALLOWED_URLS)".to_owned());
        }
        if self.allow_private {
            return Ok(());
        }
        match parsed.host() {
            Some(url::Host::Ipv4(ip)) if !public(IpAddr::V4(ip)) => Err(PRIVATE.to_owned()),
            Some(url::Host::Ipv6(ip)) if !public(IpAddr::V6(ip)) => Err(PRIVATE.to_owned()),
            Some(url::Host::Domain(name)) if local_name(name) => Err(PRIVATE.to_owned()),
            None => Err("has no host".to_owned()),
            _ => Ok(()),
        }
    }
}

const PRIVATE: &str = "must not point at a loopback, private or link-local address";

fn local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost") || name.ends_with(".internal") || name.ends_with(".local")
}

/// Whether an address is on the public internet (not loopback, private, link-local, shared,
/// documentation, multicast or unspecified; IPv4-mapped IPv6 judged as its IPv4).
pub fn public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => {
            let [a, b, ..] = ip.octets();
            !(ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || ip.is_multicast()
                || ip.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(ip) => {
            if let Some(v4) = ip.to_ipv4_mapped() {
                return public(IpAddr::V4(v4));
            }
            let first = ip.segments()[0];
            !(ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && ip.segments()[1] == 0x0db8)
        }
    }
}

/// Resolves host names, keeping only public addresses unless private ones are allowed.
struct PublicResolver {
    allow_private: bool,
}

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let kept: Vec<SocketAddr> = found.filter(|address| allow_private || public(address.ip())).collect();
            if kept.is_empty() {
                return Err("the host has no public address".into());
            }
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

/// Why a call has no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError {
    /// No answer within the tool's timeout.
    Timeout,
    /// The tool answered with a status outside 2xx.
    Status(u16),
    /// The answer was longer than the cap.
    TooLarge,
    /// The answer was not JSON.
    NotJson,
    /// The tool could not be reached (connection, DNS, TLS).
    Unreachable,
    /// The URL is not one the policy allows.
    NotAllowed(String),
}

impl CallError {
    /// The result's error code, as the model and the API see it.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Status(_) => "http_error",
            Self::TooLarge => "too_large",
            Self::NotJson => "invalid_json",
            Self::Unreachable => "unreachable",
            Self::NotAllowed(_) => "url_not_allowed",
        }
    }

    pub fn message(&self, timeout: Duration, max_bytes: usize) -> String {
        match self {
            Self::Timeout => format!("the tool did not answer within {} ms", timeout.as_millis()),
            Self::Status(status) => format!("the tool answered HTTP {status}"),
            Self::TooLarge => format!("the tool's answer is over {max_bytes} bytes"),
            Self::NotJson => "the tool's answer is not JSON".to_owned(),
            Self::Unreachable => "the tool could not be reached".to_owned(),
            Self::NotAllowed(reason) => format!("the tool's URL {reason}"),
        }
    }
}

/// One call of an HTTP tool.
pub struct Call<'a> {
    pub url: &'a str,
    /// The tool's `whsec_…` secret; unsigned without one.
    pub secret: Option<&'a str>,
    /// The call's id: the message's `webhook-id` (the same on a retry of the same call).
    pub id: &'a str,
    /// The JSON body: `{"type": "tool.call", "timestamp", "data": {…}}`.
    pub body: serde_json::Value,
    pub timeout: Duration,
    pub max_bytes: usize,
    /// Seconds since the Unix epoch, the `webhook-timestamp`.
    pub timestamp: i64,
}

/// Calls HTTP tools; cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    http: reqwest::Client,
    policy: Arc<UrlPolicy>,
}

impl Webhooks {
    pub fn new(policy: UrlPolicy) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(PublicResolver { allow_private: policy.allow_private }))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|error| format!("cannot build the HTTP client: {error}"))?;
        Ok(Self { http, policy: Arc::new(policy) })
    }

    pub fn policy(&self) -> &UrlPolicy {
        &self.policy
    }

    /// POSTs the call and reads its JSON answer.
    pub async fn call(&self, call: Call<'_>) -> Result<serde_json::Value, CallError> {
        self.policy.check(call.url).map_err(CallError::NotAllowed)?;
        let payload = serde_json::to_vec(&call.body).map_err(|_| CallError::NotJson)?;
        let mut request = self
            .http
            .post(call.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(standardwebhooks::HEADER_WEBHOOK_ID, call.id)
            .header(standardwebhooks::HEADER_WEBHOOK_TIMESTAMP, call.timestamp.to_string());
        if let Some(secret) = call.secret {
            let signature = standardwebhooks::Webhook::new(secret)
                .and_then(|hook| hook.sign(call.id, call.timestamp, &payload))
                .map_err(|_| CallError::NotAllowed("has a secret that cannot sign".to_owned()))?;
            request = request.header(standardwebhooks::HEADER_WEBHOOK_SIGNATURE, signature);
        }
        let exchange = async {
            let response = request
                .body(payload)
                .send()
                .await
                .map_err(|error| if error.is_timeout() { CallError::Timeout } else { CallError::Unreachable })?;
            let status = response.status();
            if !status.is_success() {
                return Err(CallError::Status(status.as_u16()));
            }
            if response.content_length().is_some_and(|length| length > call.max_bytes as u64) {
                return Err(CallError::TooLarge);
            }
            let mut body = Vec::new();
            let mut chunks = response.bytes_stream();
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|_| CallError::Unreachable)?;
                if body.len() + chunk.len() > call.max_bytes {
                    return Err(CallError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            serde_json::from_slice(&body).map_err(|_| CallError::NotJson)
        };
        tokio::time::timeout(call.timeout, exchange).await.unwrap_or(Err(CallError::Timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_local_urls_are_refused_unless_allowed() {
        let strict = UrlPolicy::default();
        for url in [
            "https://127.0.0.1/x",
            "https://10.1.2.3/",
            "https://192.168.0.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[fd00::1]/",
            "https://localhost:8080/",
            "https://metadata.google.internal/",
            "https://100.64.0.1/",
        ] {
            assert!(strict.check(url).is_err(), "{url} was allowed");
        }
        assert!(strict.check("http://tools.example.com/").is_err(), "plain http without an allow-list");
        assert!(strict.check("https://user:pw@tools.example.com/").is_err());
        assert!(strict.check("https://tools.example.com/weather").is_ok());
        assert!(strict.check("https://8.8.8.8/").is_ok());
        let listed = UrlPolicy { allowed_prefixes: vec!["https://api.example.com/".into()], allow_private: false };
        assert!(listed.check("https://api.example.com/tools/1").is_ok());
        assert!(listed.check("https://api.example.com.evil.net/").is_err());
        let dev = UrlPolicy { allowed_prefixes: vec!["http://127.0.0.1:".into()], allow_private: true };
        assert!(dev.check("http://127.0.0.1:9000/tool").is_ok());
    }
}
