//! Email addresses: a structural check (one `@`, a plausible local part, a domain with a dot),
//! not a delivery check.

/// Checks `raw` (trimmed) and returns it with the domain in lower case, or `None` when it is
/// not an email address.
///
/// ```
/// use cascade_campaigns::email::normalize;
/// assert_eq!(normalize(" Ann@Example.COM ").as_deref(), Some("Ann@example.com"));
/// assert_eq!(normalize("x@"), None);
/// assert_eq!(normalize("ann@localhost"), None);
/// ```
pub fn normalize(raw: &str) -> Option<String> {
    let s = raw.trim();
    let (local, domain) = s.split_once('@')?;
    if domain.contains('@') || !local_ok(local) || !domain_ok(domain) {
        return None;
    }
    Some(format!("{local}@{}", domain.to_lowercase()))
}

fn local_ok(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| !c.is_ascii() || (c.is_ascii_graphic() && !"()<>[]:;,\\\"".contains(c)))
}

fn domain_ok(domain: &str) -> bool {
    if domain.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    labels.len() >= 2
        && labels.iter().all(label_ok)
        && labels.last().is_some_and(|tld| tld.chars().count() >= 2 && !tld.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn accepts_ordinary_addresses() {
        for ok in ["a@b.co", "first.last+tag@mail.example.org", "o'neil@example.ie", "анна@пример.рф"] {
            assert!(normalize(ok).is_some(), "{ok}");
        }
    }

    #[test]
    fn refuses_what_is_not_an_address() {
        for bad in [
            "",
            "x@",
            "@example.com",
            "ann",
            "ann@@example.com",
            "ann@example",
            "ann@.example.com",
            "ann@example..com",
            "a nn@example.com",
            ".ann@example.com",
            "ann.@example.com",
            "ann@exa mple.com",
            "ann@-example.com",
            "ann@example.c",
            "ann@1.2.3.4",
            "a,b@example.com",
        ] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
    }
}
