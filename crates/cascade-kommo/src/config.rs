//! The `[kommo]` config: the integration and the accounts it serves.

use std::collections::BTreeMap;
use std::time::Duration;

use cascade_channel_kit::{ConfigError, Secret, config};
use serde::Deserialize;

/// The base domains Kommo accounts live on: `SUBDOMAIN.kommo.com` (and the older amoCRM
/// domains). A `return_url` must be on one of them, under the token's account.
pub const KOMMO_DOMAINS: &[&str] = &["kommo.com", "amocrm.ru", "amocrm.com"];

/// The Kommo integration, as configured (`[kommo]` in the server's TOML).
///
/// ```
/// let config: cascade_kommo::KommoConfig = serde_json::from_str(r#"{
///     "integration_id": "5f2c9a43-8d1e-4c1b-9a57-0c6f1e2d3b4a",
///     "client_secret": "uS8d...the-integration-secret",
///     "default_policy": "otp",
///     "accounts": {"acme": {"access_token": "eyJ0eXAiOiJKV1Qi.long-lived"}}
/// }"#).unwrap();
/// assert_eq!(config.leeway, std::time::Duration::from_secs(60));
/// assert!(!format!("{config:?}").contains("long-lived"));
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KommoConfig {
    /// The integration's id (Kommo: Settings → Integrations → the integration → Keys and
    /// scopes, "Integration ID"). Tokens for any other integration are refused.
    pub integration_id: String,
    /// The integration's secret key: Kommo signs the `widget_request` token with it.
    pub client_secret: Secret,
    /// How far our clock may disagree with Kommo's when checking `exp`, `nbf` and `iat`
    /// (default `60s`, at most `1h`).
    #[serde(default = "default_leeway", with = "cascade_engine::model::duration")]
    pub leeway: Duration,
    /// The policy for requests that name none (and whose account names none).
    #[serde(default)]
    pub default_policy: Option<String>,
    /// The limit for one call to Kommo's API (default `20s`).
    #[serde(default = "config::default_timeout", with = "cascade_engine::model::duration")]
    pub timeout: Duration,
    /// The accounts, by subdomain (`acme` for `acme.kommo.com`).
    #[serde(default)]
    pub accounts: BTreeMap<String, KommoAccount>,
}

/// One Kommo account (`[kommo.accounts.SUBDOMAIN]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KommoAccount {
    /// A long-lived token of the integration in this account (Keys and scopes → Generate
    /// long-lived token), sent as `Authorization: Bearer …` to read leads and contacts and
    /// to continue the bot.
    pub access_token: Secret,
    /// The policy for this account's requests that name none (before `default_policy`).
    #[serde(default)]
    pub policy: Option<String>,
    /// Kommo's API root for this account. Default: the account's own host, as the bot's
    /// `return_url` names it (`https://SUBDOMAIN.kommo.com`). A proxy, or a mock server in
    /// tests; a `return_url` on this host is accepted too.
    #[serde(default)]
    pub api_base_url: Option<String>,
}

fn default_leeway() -> Duration {
    Duration::from_secs(60)
}

const MAX_LEEWAY: Duration = Duration::from_secs(3600);

impl KommoConfig {
    /// A config with the required settings, the defaults and no accounts.
    pub fn new(integration_id: impl Into<String>, client_secret: impl Into<Secret>) -> Self {
        Self {
            integration_id: integration_id.into(),
            client_secret: client_secret.into(),
            leeway: default_leeway(),
            default_policy: None,
            timeout: config::default_timeout(),
            accounts: BTreeMap::new(),
        }
    }

    /// Adds an account.
    pub fn account(mut self, subdomain: impl Into<String>, account: KommoAccount) -> Self {
        self.accounts.insert(subdomain.into(), account);
        self
    }

    /// Checks the settings; the error names the key (`accounts.acme.api_base_url`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        config::required("integration_id", &self.integration_id)?;
        config::required("client_secret", self.client_secret.expose())?;
        if self.leeway > MAX_LEEWAY {
            return Err(ConfigError::new("leeway", "must be at most 1h: a token should not outlive its purpose"));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::new("timeout", "must be more than zero"));
        }
        if let Some(p) = &self.default_policy {
            config::required("default_policy", p)?;
        }
        if self.accounts.is_empty() {
            return Err(ConfigError::new(
                "accounts",
                "no account configured: add [kommo.accounts.SUBDOMAIN] with its access_token",
            ));
        }
        for (name, account) in &self.accounts {
            let key = |k: &str| format!("accounts.{name}.{k}");
            if !is_subdomain(name) {
                return Err(ConfigError::new(
                    format!("accounts.{name}"),
                    "the key is the account's subdomain: lower-case letters, digits and '-' (acme for acme.kommo.com)",
                ));
            }
            config::required(&key("access_token"), account.access_token.expose())?;
            if let Some(p) = &account.policy {
                config::required(&key("policy"), p)?;
            }
            if let Some(base) = &account.api_base_url {
                config::base_url(&key("api_base_url"), base)?;
            }
        }
        Ok(())
    }
}

impl KommoAccount {
    /// An account with its access token and no overrides.
    pub fn new(access_token: impl Into<Secret>) -> Self {
        Self { access_token: access_token.into(), policy: None, api_base_url: None }
    }
}

/// Whether `s` can be a Kommo subdomain (one DNS label, lower case).
pub(crate) fn is_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> KommoConfig {
        KommoConfig::new("5f2c9a43-8d1e-4c1b-9a57-0c6f1e2d3b4a", "secret").account("acme", KommoAccount::new("tok"))
    }

    #[test]
    fn errors_name_the_key() {
        let bad = |f: fn(&mut KommoConfig)| {
            let mut c = valid();
            f(&mut c);
            c.validate().expect_err("invalid").key
        };
        assert!(valid().validate().is_ok());
        assert_eq!(bad(|c| c.integration_id = " ".into()), "integration_id");
        assert_eq!(bad(|c| c.leeway = Duration::from_secs(7200)), "leeway");
        assert_eq!(bad(|c| c.accounts.clear()), "accounts");
        assert_eq!(bad(|c| c.default_policy = Some("".into())), "default_policy");
        assert_eq!(
            bad(|c| c.accounts.get_mut("acme").expect("acme").api_base_url = Some("acme.kommo.com".into())),
            "accounts.acme.api_base_url"
        );
        assert_eq!(
            bad(|c| c.accounts.get_mut("acme").expect("acme").policy = Some(" ".into())),
            "accounts.acme.policy"
        );
        assert_eq!(
            bad(|c| {
                c.accounts.insert("Acme.kommo.com".into(), KommoAccount::new("t"));
            }),
            "accounts.Acme.kommo.com"
        );
    }

    #[test]
    fn toml_shape() {
        let config: KommoConfig = toml::from_str(
            r#"
            integration_id = "5f2c9a43-8d1e-4c1b-9a57-0c6f1e2d3b4a"
            client_secret = "s3cr3t"
            leeway = "2m"
            default_policy = "otp"

            [accounts.acme]
            access_token = "long-lived"
            policy = "sales"
            api_base_url = "http://127.0.0.1:9000"
            "#,
        )
        .expect("parse");
        assert_eq!(config.leeway, Duration::from_secs(120));
        assert_eq!(config.accounts["acme"].policy.as_deref(), Some("sales"));
        assert!(config.validate().is_ok());
        let unknown = toml::from_str::<KommoConfig>("integration_id = \"x\"\nclient_secret = \"y\"\nsecret = \"z\"");
        assert!(unknown.expect_err("unknown key").to_string().contains("secret"));
    }
}
