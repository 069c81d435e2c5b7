//! [`Kommo`]: verifying a request, mapping it, reading Kommo's API and continuing the bot.

use std::collections::BTreeMap;

use cascade_channel_kit::{ConfigError, http};
use cascade_engine::Contact;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest;

use crate::config::{KOMMO_DOMAINS, is_subdomain};
use crate::mapping::{self, Mapped};
use crate::report::{ContinueReport, ContinueResult, check_handlers};
use crate::token::{self, Claims, origin};
use crate::{AuthError, KommoAccount, KommoConfig, KommoError, WidgetRequest};

/// The Kommo record a request is about, whose contact details can be fetched.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    /// A lead (deal): `GET /api/v4/leads/{id}?with=contacts`, then its main contact.
    Lead(u64),
    /// A contact: `GET /api/v4/contacts/{id}`.
    Contact(u64),
}

/// A request whose token checked out.
///
/// It serializes, so that a request answered before its cascade started can be kept (with
/// its [`WidgetRequest`]) and worked on after a restart, when its token may have expired.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Verified {
    /// The account's key in [`KommoConfig::accounts`]: its subdomain.
    pub account: String,
    /// The token's claims.
    pub claims: Claims,
    /// The lead or contact the request is about: `data[lead_id]`, else `data[contact_id]`.
    pub entity: Option<Entity>,
    /// Where the account's API is: the configured `api_base_url`, else the `return_url`'s
    /// scheme and host.
    api_base: String,
}

/// The Kommo integration: one per server, for every configured account.
///
/// ```no_run
/// # async fn demo(config: cascade_kommo::KommoConfig, content_type: Option<&str>, body: &[u8], now: i64)
/// #     -> Result<(), cascade_kommo::KommoError> {
/// use cascade_kommo::{Kommo, parse_widget_request};
/// let kommo = Kommo::new(config).expect("a valid [kommo] config");
/// let request = parse_widget_request(content_type, body)?;
/// let verified = kommo.verify(&request, "https://cascade.example.com", now)?;
/// let mapped = kommo.to_cascade(&verified, &request).await?;
/// let key = Kommo::idempotency_key(&request.return_url);
/// # Ok(()) }
/// ```
pub struct Kommo {
    config: KommoConfig,
    http: reqwest::Client,
    /// `api_base_url`s, checked and without a trailing slash.
    bases: BTreeMap<String, String>,
}

impl std::fmt::Debug for Kommo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kommo").field("config", &self.config).finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct LeadBody {
    #[serde(default, rename = "_embedded")]
    embedded: Option<LeadEmbedded>,
}

#[derive(Deserialize)]
struct LeadEmbedded {
    #[serde(default)]
    contacts: Vec<LinkedContact>,
}

#[derive(Deserialize)]
struct LinkedContact {
    id: u64,
    #[serde(default)]
    is_main: bool,
}

#[derive(Deserialize)]
struct ContactBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    custom_fields_values: Option<Vec<CustomField>>,
}

#[derive(Deserialize)]
struct CustomField {
    #[serde(default)]
    field_code: Option<String>,
    #[serde(default)]
    values: Vec<FieldValue>,
}

#[derive(Deserialize)]
struct FieldValue {
    #[serde(default)]
    value: Value,
    #[serde(default)]
    enum_code: Option<String>,
}

/// What Kommo's API knows of the contact.
#[derive(Default, Debug)]
struct Found {
    name: Option<String>,
    phone: Option<String>,
    email: Option<String>,
}

impl ContactBody {
    /// The first value of the field with `code` (`PHONE`, `EMAIL`), preferring `prefer`
    /// (`MOB` for phones).
    fn field(&self, code: &str, prefer: Option<&str>) -> Option<String> {
        let values: Vec<&FieldValue> = self
            .custom_fields_values
            .iter()
            .flatten()
            .filter(|f| f.field_code.as_deref().is_some_and(|c| c.eq_ignore_ascii_case(code)))
            .flat_map(|f| &f.values)
            .filter(|v| v.value.as_str().is_some_and(|s| !s.trim().is_empty()))
            .collect();
        let preferred = prefer
            .and_then(|p| values.iter().find(|v| v.enum_code.as_deref().is_some_and(|c| c.eq_ignore_ascii_case(p))));
        preferred.or(values.first()).and_then(|v| v.value.as_str()).map(|s| s.trim().to_owned())
    }
}

impl Kommo {
    /// The integration for `config`; fails, naming the key, on a config that cannot work.
    pub fn new(config: KommoConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut bases = BTreeMap::new();
        for (name, account) in &config.accounts {
            if let Some(base) = &account.api_base_url {
                let key = format!("accounts.{name}.api_base_url");
                bases.insert(name.clone(), cascade_channel_kit::config::base_url(&key, base)?);
            }
        }
        Ok(Self { http: http::client(config.timeout), bases, config })
    }

    /// The config.
    pub fn config(&self) -> &KommoConfig {
        &self.config
    }

    /// The idempotency key of a request: `kommo:` and the hex SHA-256 of its `return_url`.
    /// Kommo gives every waiting step its own `return_url`, so a repeated request (Kommo
    /// retrying, a proxy replaying) finds the cascade the first one started.
    ///
    /// ```
    /// let key = cascade_kommo::Kommo::idempotency_key("https://acme.kommo.com/api/v4/salesbot/7/continue/9");
    /// assert!(key.starts_with("kommo:") && key.len() == 6 + 64);
    /// ```
    pub fn idempotency_key(return_url: &str) -> String {
        format!("kommo:{}", hex::encode(sha2::Sha256::digest(return_url.trim().as_bytes())))
    }

    /// The owner of a cascade a bot of `account` started (`kommo:ACCOUNT`), as the engine's
    /// `CascadeRequest::owner` names it.
    pub fn owner(account: &str) -> String {
        format!("kommo:{account}")
    }

    fn account(&self, name: &str) -> Option<&KommoAccount> {
        self.config.accounts.get(name)
    }

    /// The account a token's `iss` names: the subdomain of `SUBDOMAIN.kommo.com` (or
    /// `.amocrm.ru`, `.amocrm.com`), or the account whose `api_base_url` has that host.
    fn account_of(&self, iss: &str) -> Result<String, AuthError> {
        let with_scheme = if iss.contains("://") { iss.to_owned() } else { format!("https://{iss}") };
        let host = url::Url::parse(&with_scheme)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .ok_or_else(|| AuthError::Claim { claim: "iss", message: format!("{iss:?} is not an account address") })?;
        let subdomain = KOMMO_DOMAINS
            .iter()
            .find_map(|d| host.strip_suffix(d).and_then(|s| s.strip_suffix('.')))
            .filter(|s| is_subdomain(s))
            .map(str::to_owned);
        let name = subdomain
            .or_else(|| {
                let iss_origin = origin(&with_scheme);
                self.bases.iter().find(|(_, base)| origin(base) == iss_origin).map(|(name, _)| name.clone())
            })
            .ok_or_else(|| AuthError::UnknownAccount(host.clone()))?;
        if self.account(&name).is_none() {
            return Err(AuthError::UnknownAccount(name));
        }
        Ok(name)
    }

    /// Whether `url` is on the account's own host (`https://ACCOUNT.kommo.com`, …) or on its
    /// configured `api_base_url`'s scheme, host and port. Returns the URL's origin.
    fn return_origin(&self, account: &str, url: &url::Url) -> Option<String> {
        if !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let found = origin(url.as_str())?;
        if let Some(base) = self.bases.get(account)
            && origin(base).as_deref() == Some(found.as_str())
        {
            return Some(found);
        }
        let host = url.host_str()?.to_ascii_lowercase();
        let on_kommo = url.scheme() == "https"
            && url.port().is_none()
            && KOMMO_DOMAINS.iter().any(|d| host == format!("{account}.{d}"));
        on_kommo.then_some(found)
    }

    /// Checks a request's token at `now` (unix seconds):
    ///
    /// 1. the signature: HMAC-SHA512 (or -384, -256, as the header says; nothing else) with
    ///    the integration's client secret, compared in constant time;
    /// 2. `exp` (required), `nbf` and `iat` against `now` with the configured leeway; numbers
    ///    may be fractional;
    /// 3. `client_uuid` is the configured `integration_id`;
    /// 4. `aud` is `audience`: this server's scheme and host as Kommo calls it
    ///    (`https://cascade.example.com`), compared as origins;
    /// 5. `iss` names a configured account;
    /// 6. `return_url` is on that account's host: we will send its access token there.
    ///
    /// Then reads the lead or contact the request is about from `data[lead_id]` /
    /// `data[contact_id]`.
    pub fn verify(&self, req: &WidgetRequest, audience: &str, now_unix: i64) -> Result<Verified, KommoError> {
        let payload = token::verify_signature(&req.token, self.config.client_secret.expose().as_bytes())?;
        let claims = token::claims(payload, now_unix, self.config.leeway.as_secs())?;
        if !claims.client_uuid.eq_ignore_ascii_case(self.config.integration_id.trim()) {
            return Err(AuthError::WrongIntegration { found: claims.client_uuid.clone() }.into());
        }
        let expected = origin(audience);
        if expected.is_none() || !claims.aud.iter().any(|a| origin(a) == expected) {
            return Err(AuthError::WrongAudience { found: claims.aud.clone(), expected: audience.to_owned() }.into());
        }
        let account = self.account_of(&claims.iss)?;
        let url = url::Url::parse(&req.return_url)
            .map_err(|e| KommoError::malformed("return_url", format!("not a URL ({e})")))?;
        let return_origin = self.return_origin(&account, &url).ok_or_else(|| AuthError::ForeignReturnUrl {
            host: url.host_str().map_or_else(String::new, |h| match url.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_owned(),
            }),
            account: account.clone(),
        })?;
        let entity = match mapping::entity_id(&req.data, "lead_id")? {
            Some(id) => Some(Entity::Lead(id)),
            None => mapping::entity_id(&req.data, "contact_id")?.map(Entity::Contact),
        };
        let api_base = self.bases.get(&account).cloned().unwrap_or(return_origin);
        Ok(Verified { account, claims, entity, api_base })
    }

    /// Maps a verified request's `data` to a cascade:
    ///
    /// - `text` (or `message`): the message, required;
    /// - `policy`: the policy's name (else the account's `policy`, else `default_policy`);
    /// - `name`, `phone`, `email` (or the same under `contact`), and `contact[fields]`;
    /// - `deal`: an object, the template variable `deal`.
    ///
    /// Values Kommo left empty or unfilled (`{{contact.phone}}`) are missing. When the phone or
    /// the email is missing and the request names a lead or contact, they (and a missing
    /// name) are read from Kommo's API with the account's access token. Without any phone
    /// or email the request is refused naming `data.phone`.
    pub async fn to_cascade(&self, verified: &Verified, req: &WidgetRequest) -> Result<Mapped, KommoError> {
        let data = &req.data;
        let text = mapping::message_text(data)?;
        let account =
            self.account(&verified.account).ok_or_else(|| AuthError::UnknownAccount(verified.account.clone()))?;
        let policy = mapping::detail(data, &[&["policy"]])?
            .or_else(|| account.policy.clone())
            .or_else(|| self.config.default_policy.clone());
        let mut name = mapping::detail(data, &[&["name"], &["contact", "name"]])?;
        let mut phone = mapping::detail(data, &[&["phone"], &["contact", "phone"]])?;
        let mut email = mapping::detail(data, &[&["email"], &["contact", "email"]])?;
        let fields = mapping::object(data, &["contact", "fields"])?;
        let deal = mapping::object(data, &["deal"])?;

        if (phone.is_none() || email.is_none())
            && let Some(entity) = verified.entity
        {
            match self.fetch(&verified.api_base, account, entity).await {
                Ok(found) => {
                    phone = phone.or(found.phone);
                    email = email.or(found.email);
                    name = name.or(found.name);
                }
                // With one address in hand, a failed lookup of the other is not worth failing for.
                Err(e) if phone.is_some() || email.is_some() => {
                    tracing::warn!(account = %verified.account, ?entity, error = %e, "kommo: contact lookup failed");
                }
                Err(e) => return Err(e),
            }
        }
        if phone.is_none() && email.is_none() {
            let hint = if verified.entity.is_some() {
                "no phone or email in the request, nor on the lead or contact in Kommo"
            } else {
                "no phone or email: send data[phone] or data[email], or data[lead_id] / data[contact_id] to read them from Kommo"
            };
            return Err(KommoError::invalid("data.phone", hint));
        }
        let contact = Contact {
            name,
            phone: phone.map(|p| mapping::normalize_phone(&p)),
            email,
            fields: fields.into_iter().collect(),
            ..Contact::default()
        };
        let variables = if deal.is_empty() { Value::Null } else { json!({"deal": deal}) };
        Ok(Mapped { contact, text, policy, variables })
    }

    /// GETs a document from the account's API; `Ok(None)` when Kommo has no such record.
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        account: &KommoAccount,
        url: String,
    ) -> Result<Option<T>, KommoError> {
        let token = account.access_token.expose();
        let call = self.http.get(&url).bearer_auth(token).header("accept", "application/json");
        let answer = http::call(call).await.map_err(|e| KommoError::Upstream(http::redact(&e.detail, token)))?;
        match answer.status.as_u16() {
            200 => answer.json::<T>().map(Some).map_err(|e| KommoError::Upstream(format!("unreadable answer: {e}"))),
            204 | 404 => Ok(None),
            401 | 403 => Err(KommoError::Upstream(format!(
                "Kommo refused the account's access_token ({}); check it has not expired or been revoked",
                answer.status
            ))),
            _ => Err(KommoError::Upstream(format!(
                "unexpected answer ({}): {}",
                answer.status,
                http::redact(&answer.snippet(), token)
            ))),
        }
    }

    async fn fetch(&self, base: &str, account: &KommoAccount, entity: Entity) -> Result<Found, KommoError> {
        let contact_id = match entity {
            Entity::Contact(id) => id,
            Entity::Lead(id) => {
                let lead: LeadBody = self
                    .get(account, format!("{base}/api/v4/leads/{id}?with=contacts"))
                    .await?
                    .ok_or_else(|| KommoError::invalid("data.lead_id", format!("Kommo has no lead {id}")))?;
                let contacts = lead.embedded.map(|e| e.contacts).unwrap_or_default();
                let main = contacts.iter().find(|c| c.is_main).or(contacts.first());
                match main {
                    Some(c) => c.id,
                    None => return Ok(Found::default()),
                }
            }
        };
        let contact: Option<ContactBody> = self.get(account, format!("{base}/api/v4/contacts/{contact_id}")).await?;
        let Some(contact) = contact else {
            return match entity {
                Entity::Contact(id) => {
                    Err(KommoError::invalid("data.contact_id", format!("Kommo has no contact {id}")))
                }
                Entity::Lead(_) => Ok(Found::default()),
            };
        };
        Ok(Found {
            phone: contact.field("PHONE", Some("MOB")),
            email: contact.field("EMAIL", None),
            name: contact.name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()),
        })
    }

    /// Continues the bot waiting at `return_url`: POSTs the report as JSON with the
    /// account's access token. `2xx` is [`Continued`](ContinueResult::Continued); `404`
    /// [`BotGone`](ContinueResult::BotGone) (the bot stopped waiting: record it, never
    /// retry); 408/425/429/5xx and network failures are
    /// [`Transient`](ContinueResult::Transient) (with `Retry-After`); other answers are
    /// [`Permanent`](ContinueResult::Permanent). A `return_url` off the account's host, an
    /// unknown account or handlers beyond Kommo's limits are `Permanent` without a call.
    pub async fn continue_bot(&self, account: &str, return_url: &str, report: &ContinueReport) -> ContinueResult {
        let permanent = |detail: String| ContinueResult::Permanent { detail };
        let Some(config) = self.account(account) else {
            return permanent(format!("account {account:?} is not configured"));
        };
        let allowed = url::Url::parse(return_url).ok().and_then(|u| self.return_origin(account, &u));
        if allowed.is_none() {
            return permanent(format!("return_url {return_url:?} is not on account {account:?}'s host"));
        }
        if let Err(e) = check_handlers(report.handlers()) {
            return permanent(e.to_string());
        }
        let token = config.access_token.expose();
        let call = self.http.post(return_url).bearer_auth(token).json(&report.body());
        let answer = match http::call(call).await {
            Ok(answer) => answer,
            Err(e) => {
                return ContinueResult::Transient {
                    retry_after: e.retry_after,
                    detail: http::redact(&e.detail, token),
                };
            }
        };
        let status = answer.status.as_u16();
        let detail = || format!("Kommo answered {}: {}", answer.status, http::redact(&answer.snippet(), token));
        match status {
            200..=299 => ContinueResult::Continued,
            404 => ContinueResult::BotGone,
            408 | 425 | 429 | 500..=599 => {
                ContinueResult::Transient { retry_after: http::retry_after(&answer.headers), detail: detail() }
            }
            _ => permanent(detail()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kommo() -> Kommo {
        let mut test = KommoAccount::new("t");
        test.api_base_url = Some("http://127.0.0.1:9000/".into());
        Kommo::new(KommoConfig::new("i", "s").account("acme", KommoAccount::new("t")).account("local", test))
            .expect("config")
    }

    #[test]
    fn accounts_from_iss() {
        let k = kommo();
        assert_eq!(k.account_of("https://acme.kommo.com").as_deref(), Ok("acme"));
        assert_eq!(k.account_of("https://ACME.amocrm.ru/").as_deref(), Ok("acme"));
        assert_eq!(k.account_of("acme.amocrm.com").as_deref(), Ok("acme"));
        assert_eq!(k.account_of("http://127.0.0.1:9000").as_deref(), Ok("local"));
        assert_eq!(k.account_of("https://other.kommo.com"), Err(AuthError::UnknownAccount("other".into())));
        assert_eq!(
            k.account_of("https://acme.kommo.com.evil.test"),
            Err(AuthError::UnknownAccount("acme.kommo.com.evil.test".into()))
        );
        assert!(matches!(k.account_of("https://a.b.kommo.com"), Err(AuthError::UnknownAccount(_))));
    }

    #[test]
    fn return_urls() {
        let k = kommo();
        let ok = |account: &str, u: &str| k.return_origin(account, &url::Url::parse(u).expect("url")).is_some();
        assert!(ok("acme", "https://acme.kommo.com/api/v4/salesbot/1/continue/2"));
        assert!(ok("acme", "https://acme.amocrm.ru/api/v4/salesbot/1/continue/2"));
        assert!(!ok("acme", "http://acme.kommo.com/api/v4/salesbot/1/continue/2"), "plain http");
        assert!(!ok("acme", "https://acme.kommo.com:8443/x"), "another port");
        assert!(!ok("acme", "https://evil.kommo.com/x"));
        assert!(!ok("acme", "https://acme.kommo.com.evil.test/x"));
        assert!(!ok("acme", "https://user@acme.kommo.com/x"));
        assert!(ok("local", "http://127.0.0.1:9000/api/v4/salesbot/1/continue/2"));
        assert!(!ok("local", "http://127.0.0.1:9001/x"));
        assert!(!ok("acme", "http://127.0.0.1:9000/x"), "another account's base");
    }

    #[test]
    fn idempotency_keys() {
        let a = Kommo::idempotency_key("https://acme.kommo.com/api/v4/salesbot/7/continue/9");
        assert_eq!(a, Kommo::idempotency_key(" https://acme.kommo.com/api/v4/salesbot/7/continue/9 "));
        assert_ne!(a, Kommo::idempotency_key("https://acme.kommo.com/api/v4/salesbot/7/continue/10"));
        // sha256("abc")
        assert_eq!(
            Kommo::idempotency_key("abc"),
            "kommo:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Kommo::owner("acme"), "kommo:acme");
    }
}
