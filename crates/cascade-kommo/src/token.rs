//! The `widget_request` token: an HMAC-signed JWT (compact JWS) checked by hand.
//!
//! Kommo signs it with the integration's client secret. Its numeric claims are not always
//! integers (`"exp": 1700000000.0` has been seen), which strict JWT libraries refuse, so the
//! checks are written out here: signature first (constant time), then the claims.

use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};

use crate::AuthError;

/// The longest token read.
const MAX_TOKEN: usize = 16 * 1024;

/// base64url, with or without `=` padding.
const B64: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The claims of a verified token.
#[derive(Clone, PartialEq, Debug, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    /// `iss`: the account's address (`https://acme.kommo.com`).
    pub iss: String,
    /// `aud`: the integration's base address (one value, or several).
    pub aud: Vec<String>,
    /// `client_uuid`: the integration's id.
    pub client_uuid: String,
    /// `account_id`: the account's numeric id, when sent.
    pub account_id: Option<i64>,
    /// `jti`: the token's id, when sent.
    pub jti: Option<String>,
    /// `exp`, unix seconds (possibly fractional).
    pub exp: f64,
    /// `iat`, unix seconds, when sent.
    pub iat: Option<f64>,
    /// `nbf`, unix seconds, when sent.
    pub nbf: Option<f64>,
    /// Every claim as sent, including those above.
    pub all: Map<String, Value>,
}

/// Checks the structure, algorithm and signature; returns the payload.
pub(crate) fn verify_signature(token: &str, secret: &[u8]) -> Result<Map<String, Value>, AuthError> {
    let token = token.trim();
    if token.len() > MAX_TOKEN {
        return Err(AuthError::Malformed(format!("longer than {MAX_TOKEN} bytes")));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts[..] else {
        return Err(AuthError::Malformed(format!("{} parts, a signed JWT has 3", parts.len())));
    };
    let header_json = decode_object(header, "header")?;
    let alg = header_json.get("alg").and_then(Value::as_str).unwrap_or_default();
    if header_json.contains_key("crit") {
        return Err(AuthError::Malformed("the header has critical extensions (crit)".into()));
    }
    let signing_input = &token[..header.len() + 1 + payload.len()];
    let expected = mac(alg, secret, signing_input.as_bytes()).ok_or_else(|| AuthError::Algorithm(alg.to_owned()))?;
    let given = B64.decode(signature).map_err(|_| AuthError::BadSignature)?;
    if !cascade_channel_kit::webhook::constant_time_eq(&expected, &given) {
        return Err(AuthError::BadSignature);
    }
    decode_object(payload, "payload")
}

/// The HMAC of `data` under `key` for a JWS algorithm name; `None` for anything that is not
/// HMAC-SHA2.
pub(crate) fn mac(alg: &str, key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    macro_rules! run {
        ($digest:ty) => {{
            let mut m = <Hmac<$digest> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }};
    }
    Some(match alg {
        "HS512" => run!(sha2::Sha512),
        "HS384" => run!(sha2::Sha384),
        "HS256" => run!(sha2::Sha256),
        _ => return None,
    })
}

fn decode_object(part: &str, what: &str) -> Result<Map<String, Value>, AuthError> {
    let bytes = B64.decode(part).map_err(|_| AuthError::Malformed(format!("the {what} is not base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(AuthError::Malformed(format!("the {what} is not a JSON object"))),
    }
}

/// A NumericDate claim: a JSON number (integer or not), or a string holding one.
fn numeric(all: &Map<String, Value>, claim: &'static str) -> Result<Option<f64>, AuthError> {
    let value = match all.get(claim) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    match value {
        Some(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(AuthError::Claim { claim, message: "must be a number of seconds since 1970".into() }),
    }
}

fn text(all: &Map<String, Value>, claim: &'static str) -> Result<Option<String>, AuthError> {
    match all.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned()).filter(|s| !s.is_empty())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(AuthError::Claim { claim, message: "must be a string".into() }),
    }
}

fn shown(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { v.to_string() }
}

/// Reads the claims and checks the times at `now` (unix seconds) with `leeway` seconds.
pub(crate) fn claims(all: Map<String, Value>, now: i64, leeway: u64) -> Result<Claims, AuthError> {
    let missing = |claim: &'static str| AuthError::Claim { claim, message: "missing".into() };
    let exp = numeric(&all, "exp")?.ok_or_else(|| missing("exp"))?;
    let nbf = numeric(&all, "nbf")?;
    let iat = numeric(&all, "iat")?;
    let (now_f, leeway_f) = (now as f64, leeway as f64);
    if now_f >= exp + leeway_f {
        return Err(AuthError::Expired { exp: shown(exp), now, leeway_secs: leeway });
    }
    for (claim, value) in [("nbf", nbf), ("iat", iat)] {
        if let Some(v) = value
            && v > now_f + leeway_f
        {
            return Err(AuthError::NotYetValid { claim, value: shown(v), now });
        }
    }
    let aud = match all.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    if aud.is_empty() {
        return Err(missing("aud"));
    }
    let account_id = match all.get("account_id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .ok_or(AuthError::Claim { claim: "account_id", message: "must be a number".into() })?,
        ),
    };
    Ok(Claims {
        iss: text(&all, "iss")?.ok_or_else(|| missing("iss"))?,
        client_uuid: text(&all, "client_uuid")?.ok_or_else(|| missing("client_uuid"))?,
        jti: text(&all, "jti")?,
        aud,
        account_id,
        exp,
        iat,
        nbf,
        all,
    })
}

/// `scheme://host[:port]` of a URL (default ports left out, host lower-cased), or `None` when
/// `s` is not an absolute http(s) URL with a host.
pub(crate) fn origin(s: &str) -> Option<String> {
    let url = url::Url::parse(s.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    Some(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn sign(alg: &str, payload: &str, secret: &[u8]) -> String {
        let input =
            format!("{}.{}", b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes()), b64(payload.as_bytes()));
        let sig = mac(alg, secret, input.as_bytes()).expect("an HMAC algorithm");
        format!("{input}.{}", b64(&sig))
    }

    #[test]
    fn rfc_4231_case_2_for_hs512() {
        // HMAC-SHA-512 test vector from RFC 4231 (key "Jefe").
        let mac = mac("HS512", b"Jefe", b"what do ya want for nothing?").expect("HS512");
        assert_eq!(
            hex::encode(mac),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
    }

    #[test]
    fn signatures() {
        let payload = r#"{"exp": 10}"#;
        for alg in ["HS256", "HS384", "HS512"] {
            let t = sign(alg, payload, b"k");
            assert_eq!(verify_signature(&t, b"k").expect(alg)["exp"], 10);
            assert_eq!(verify_signature(&t, b"other"), Err(AuthError::BadSignature));
        }
        let t = sign("HS512", payload, b"k");
        let (head, sig) = t.rsplit_once('.').expect("dots");
        assert_eq!(verify_signature(&format!("{head}.{sig}=="), b"k").map(|_| ()), Ok(()), "padding is accepted");
        let tampered = format!("{}.{}.{sig}", head.split('.').next().expect("h"), b64(br#"{"exp": 99}"#));
        assert_eq!(verify_signature(&tampered, b"k"), Err(AuthError::BadSignature));
        let none = format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(payload.as_bytes()));
        assert_eq!(verify_signature(&none, b"k"), Err(AuthError::Algorithm("none".into())));
        let rs = format!("{}.{}.AAAA", b64(br#"{"alg":"RS256"}"#), b64(payload.as_bytes()));
        assert_eq!(verify_signature(&rs, b"k"), Err(AuthError::Algorithm("RS256".into())));
        assert!(matches!(verify_signature("a.b", b"k"), Err(AuthError::Malformed(_))));
        assert!(matches!(verify_signature("a.b.c.d.e", b"k"), Err(AuthError::Malformed(_))));
        assert!(matches!(verify_signature("!!.e30.AAAA", b"k"), Err(AuthError::Malformed(_))));
        let crit = format!("{}.{}.AAAA", b64(br#"{"alg":"HS512","crit":["b64"]}"#), b64(payload.as_bytes()));
        assert!(matches!(verify_signature(&crit, b"k"), Err(AuthError::Malformed(_))));
    }

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn times_with_floats_and_leeway() {
        let base = serde_json::json!({"iss": "https://acme.kommo.com", "aud": "https://h.test", "client_uuid": "c"});
        let with = |extra: Value| {
            let mut m = map(base.clone());
            m.extend(map(extra));
            m
        };
        let ok = claims(with(serde_json::json!({"exp": 1000.0, "iat": 900.5, "nbf": 900})), 1000, 60).expect("leeway");
        assert_eq!((ok.exp, ok.iat, ok.nbf), (1000.0, Some(900.5), Some(900.0)));
        assert_eq!(
            claims(with(serde_json::json!({"exp": 1000.0})), 1060, 60),
            Err(AuthError::Expired { exp: "1000".into(), now: 1060, leeway_secs: 60 })
        );
        assert!(claims(with(serde_json::json!({"exp": "1000.5"})), 1000, 0).is_ok(), "a numeric string");
        assert!(matches!(
            claims(with(serde_json::json!({"exp": 5000, "nbf": 2000.25})), 1000, 60),
            Err(AuthError::NotYetValid { claim: "nbf", .. })
        ));
        assert!(matches!(
            claims(with(serde_json::json!({"exp": 5000, "iat": 1100})), 1000, 60),
            Err(AuthError::NotYetValid { claim: "iat", .. })
        ));
        assert!(matches!(claims(with(serde_json::json!({})), 1000, 60), Err(AuthError::Claim { claim: "exp", .. })));
        assert!(matches!(
            claims(with(serde_json::json!({"exp": "soon"})), 1000, 60),
            Err(AuthError::Claim { claim: "exp", .. })
        ));
        assert!(matches!(
            claims(with(serde_json::json!({"exp": "NaN"})), 1000, 60),
            Err(AuthError::Claim { claim: "exp", .. })
        ));
        let mut no_aud = with(serde_json::json!({"exp": 5000}));
        no_aud.remove("aud");
        assert!(matches!(claims(no_aud, 1000, 60), Err(AuthError::Claim { claim: "aud", .. })));
    }

    #[test]
    fn origins() {
        assert_eq!(origin("https://Cascade.Example.com/").as_deref(), Some("https://cascade.example.com"));
        assert_eq!(origin("https://h.test:443/x?y").as_deref(), Some("https://h.test"));
        assert_eq!(origin("http://127.0.0.1:8080").as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(origin("h.test"), None);
        assert_eq!(origin("ftp://h.test"), None);
    }
}
