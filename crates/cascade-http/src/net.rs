//! Outbound URLs the caller chose (callbacks, media to fetch): no server-side request forgery.
//!
//! A URL whose host is, or resolves to, a loopback, private, link-local, shared (CGNAT),
//! unspecified, multicast or documentation address is refused unless the server allows private
//! addresses (the demo does). Every file URL of a request (`message.attachment`, the
//! per-channel overrides', an inline policy's steps') and its `callback_url` are checked when
//! the request arrives (a clear 422 naming the field). Callbacks are checked again on every
//! try: a host written as an address before it ([`UrlPolicy::check_offline`]), a host name
//! on connection through [`GuardedResolver`], so a name that later resolves elsewhere (DNS
//! rebinding) is refused too ([`refusal`] tells such a refusal from other failures). File
//! URLs are fetched by the adapters' own clients, which follow no redirects but do not check
//! the address again. Redirects are not followed.

use std::error::Error;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether an address is one the public internet cannot reach: loopback, private, link-local,
/// shared address space, unspecified, broadcast, multicast, documentation or benchmarking, and
/// IPv6 unique-local, link-local and IPv4-mapped forms of those.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal_v4(v4);
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64 of anything
        }
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared 100.64.0.0/10
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18.0.0/15
        || o[0] >= 240
}

/// Why an outbound URL was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlRefused {
    /// Not an absolute `http(s)` URL with a host.
    #[error("must be an absolute http:// or https:// URL with a host")]
    NotHttp,
    /// It carries a user name or password.
    #[error("must not carry credentials")]
    Credentials,
    /// The host is or resolves to an internal address.
    #[error("resolves to an internal address ({0}); this server does not call internal addresses")]
    Internal(IpAddr),
    /// The host name does not resolve.
    #[error("the host does not resolve: {0}")]
    Unresolvable(String),
}

/// Where outbound calls may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct UrlPolicy {
    /// Allow internal addresses (loopback, private networks). Off by default.
    pub allow_internal: bool,
}

impl UrlPolicy {
    /// Checks a URL's form and, unless internal addresses are allowed, where its host resolves.
    pub async fn check(&self, raw: &str) -> Result<url::Url, UrlRefused> {
        let url = self.check_offline(raw)?;
        if !self.allow_internal
            && let Some(url::Host::Domain(name)) = url.host()
        {
            for a in lookup(name, url.port_or_known_default().unwrap_or(443)).await? {
                check_ip(a.ip())?;
            }
        }
        Ok(url)
    }

    /// What [`check`](Self::check) finds without a lookup: the URL's form and, unless
    /// internal addresses are allowed, a host written as an IP address. A host name is left
    /// to the [`client`](Self::client)'s resolver, which refuses it on connection.
    pub fn check_offline(&self, raw: &str) -> Result<url::Url, UrlRefused> {
        let url = url::Url::parse(raw).map_err(|_| UrlRefused::NotHttp)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UrlRefused::NotHttp);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlRefused::Credentials);
        }
        match url.host() {
            None => return Err(UrlRefused::NotHttp),
            Some(_) if self.allow_internal => {}
            Some(url::Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip))?,
            Some(url::Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip))?,
            Some(url::Host::Domain(_)) => {}
        }
        Ok(url)
    }

    /// An HTTP client that enforces this policy on every connection and follows no redirects.
    pub fn client(&self, timeout: Duration) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cascade/", env!("CARGO_PKG_VERSION")));
        if !self.allow_internal {
            b = b.dns_resolver(Arc::new(GuardedResolver));
        }
        b.build().unwrap_or_else(|_| reqwest::Client::new())
    }
}

fn check_ip(ip: IpAddr) -> Result<(), UrlRefused> {
    if is_internal(ip) { Err(UrlRefused::Internal(ip)) } else { Ok(()) }
}

/// The addresses of `name` (at least one), looked up within 5 s.
async fn lookup(name: &str, port: u16) -> Result<Vec<SocketAddr>, UrlRefused> {
    let addrs: Vec<SocketAddr> = tokio::time::timeout(Duration::from_secs(5), tokio::net::lookup_host((name, port)))
        .await
        .map_err(|_| UrlRefused::Unresolvable(format!("{name}: lookup timed out")))?
        .map_err(|e| UrlRefused::Unresolvable(format!("{name}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(UrlRefused::Unresolvable(name.to_owned()));
    }
    Ok(addrs)
}

/// A resolver that refuses what [`UrlPolicy::check`] refuses (a name that does not resolve,
/// or that resolves to an internal address), so a connection can only reach what the check
/// would allow, even if the name's records changed since. Its error is a [`Refused`].
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str();
            let refused =
                |reason| -> Box<dyn Error + Send + Sync> { Box::new(Refused { host: host.to_owned(), reason }) };
            let addrs = lookup(host, 0).await.map_err(refused)?;
            if let Some(a) = addrs.iter().find(|a| is_internal(a.ip())) {
                return Err(refused(UrlRefused::Internal(a.ip())));
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// A connection [`GuardedResolver`] refused: the host name, and why.
#[derive(PartialEq, Eq, thiserror::Error)]
#[error("{host}: {reason}")]
pub struct Refused {
    /// The name looked up.
    pub host: String,
    /// Why it was refused.
    pub reason: UrlRefused,
}

/// The message itself: a client's error shows its causes by `Debug`.
impl fmt::Debug for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Refused({:?})", self.to_string())
    }
}

/// Why the server's URL policy refused a connection, if that is what `error` (a client's
/// error, say) comes from.
pub fn refusal<'e>(error: &'e (dyn Error + 'static)) -> Option<&'e UrlRefused> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(&refused.reason);
        }
        cause = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_internal(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "172.32.0.1", "100.128.0.1"] {
            assert!(!is_internal(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[tokio::test]
    async fn urls_are_checked() {
        let strict = UrlPolicy::default();
        assert_eq!(
            strict.check("http://127.0.0.1:9/x").await.expect_err("loopback"),
            UrlRefused::Internal("127.0.0.1".parse().expect("ip"))
        );
        assert!(matches!(strict.check("http://[::1]/").await, Err(UrlRefused::Internal(_))));
        assert!(matches!(strict.check("http://localhost:8080/").await, Err(UrlRefused::Internal(_))));
        assert_eq!(strict.check("ftp://example.com/").await.expect_err("scheme"), UrlRefused::NotHttp);
        assert_eq!(strict.check("https://u:p@example.com/").await.expect_err("creds"), UrlRefused::Credentials);
        assert_eq!(strict.check("not a url").await.expect_err("garbage"), UrlRefused::NotHttp);
        // Public literals pass without any lookup.
        assert!(strict.check("https://8.8.8.8/hook").await.is_ok());
        let open = UrlPolicy { allow_internal: true };
        assert!(open.check("http://127.0.0.1:9/x").await.is_ok());
    }

    #[tokio::test]
    async fn the_guarded_client_will_not_connect_inside() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let client = UrlPolicy::default().client(Duration::from_secs(2));
        let err = client.get(format!("http://localhost:{port}/")).send().await.expect_err("refused");
        assert!(format!("{err:?}").contains("internal addresses"), "{err:?}");
        assert!(matches!(refusal(&err), Some(UrlRefused::Internal(ip)) if ip.is_loopback()), "{err:?}");
        // Any other failure is not a refusal.
        drop(listener);
        let open = UrlPolicy { allow_internal: true }.client(Duration::from_secs(2));
        let err = open.get(format!("http://localhost:{port}/")).send().await.expect_err("nobody listens");
        assert_eq!(refusal(&err), None, "{err:?}");
    }

    #[test]
    fn without_a_lookup_only_the_form_and_address_literals_are_checked() {
        let strict = UrlPolicy::default();
        assert_eq!(
            strict.check_offline("http://127.0.0.1:9/x").expect_err("loopback"),
            UrlRefused::Internal("127.0.0.1".parse().expect("ip"))
        );
        assert!(matches!(strict.check_offline("http://[::ffff:10.0.0.1]/"), Err(UrlRefused::Internal(_))));
        assert_eq!(strict.check_offline("ftp://example.com/").expect_err("scheme"), UrlRefused::NotHttp);
        assert_eq!(strict.check_offline("https://u:p@example.com/").expect_err("creds"), UrlRefused::Credentials);
        // A name is left to the resolver.
        assert!(strict.check_offline("http://localhost:8080/").is_ok());
        assert!(strict.check_offline("https://8.8.8.8/hook").is_ok());
        assert!(UrlPolicy { allow_internal: true }.check_offline("http://127.0.0.1:9/x").is_ok());
    }
}
