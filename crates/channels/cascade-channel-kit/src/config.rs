//! Checks shared by the adapters' connection configs.

/// A connection config that cannot work, naming the key at fault.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// The config key (`base_url`, `phone_number_id`, …).
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    /// An error about `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: key.into(), message: message.into() }
    }
}

/// The default `timeout` of a connection config (serde `default`): [`DEFAULT_TIMEOUT`](crate::http::DEFAULT_TIMEOUT).
pub fn default_timeout() -> std::time::Duration {
    crate::http::DEFAULT_TIMEOUT
}

/// The engine connection for an adapter value, with the config's price (none: free) and rate limit.
pub fn connection(
    channel: std::sync::Arc<dyn cascade_engine::Channel>,
    id: impl Into<cascade_engine::ConnectionId>,
    price: Option<cascade_engine::Cost>,
    rate_limit: Option<cascade_engine::RateLimit>,
) -> cascade_engine::Connection {
    let mut c = cascade_engine::Connection::from_arc(id, channel);
    c.price = price.unwrap_or_default();
    c.rate_limit = rate_limit;
    c
}

/// Checks a `base_url` (an absolute `http(s)://` URL) and returns it without surrounding spaces
/// or a trailing slash, ready for `format!("{base}/path")`: use the value returned, not the one
/// given.
pub fn base_url(key: &str, value: &str) -> Result<String, ConfigError> {
    let value = value.trim();
    let parsed = url::Url::parse(value).map_err(|e| ConfigError::new(key, format!("not a URL ({e}): {value:?}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(ConfigError::new(key, format!("must be an http(s):// URL with a host, not {value:?}")));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(ConfigError::new(key, format!("must not carry a query or fragment: {value:?}")));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

/// Checks that a required text setting is not blank.
pub fn required(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() { Err(ConfigError::new(key, "must not be empty")) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(base_url("base_url", "http://127.0.0.1:9000/").as_deref(), Ok("http://127.0.0.1:9000"));
        assert_eq!(base_url("base_url", "https://graph.facebook.com").as_deref(), Ok("https://graph.facebook.com"));
        let err = base_url("base_url", "graph.facebook.com").expect_err("relative");
        assert_eq!(err.key, "base_url");
        assert!(base_url("base_url", "ftp://x.test").is_err());
        assert!(base_url("base_url", "https://x.test/?a=1").is_err());
        // URL parsing forgives surrounding spaces; the value returned must not keep them.
        assert_eq!(base_url("base_url", " https://x.test/v1/ \n").as_deref(), Ok("https://x.test/v1"));
        assert_eq!(
            required("phone_number_id", " ").expect_err("blank").to_string(),
            "phone_number_id: must not be empty"
        );
    }
}
