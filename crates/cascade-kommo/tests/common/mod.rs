//! Shared by the tests: a config, and tokens signed the way Kommo signs them.
#![allow(dead_code)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cascade_kommo::{Kommo, KommoAccount, KommoConfig};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

pub const INTEGRATION: &str = "5f2c9a43-8d1e-4c1b-9a57-0c6f1e2d3b4a";
pub const SECRET: &str = "Xk29vL1qZ0uPzF3nH8tR6yWc4bJ7sQaE5mGdT2oNiUhVrYlKxC9pB1wA6fS3jD8e";
pub const ACCESS_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.long-lived.acme";
pub const AUDIENCE: &str = "https://cascade.example.com";
pub const NOW: i64 = 1_700_000_000;

/// A compact JWS of `claims`, HMAC-signed with `secret` under `alg` (HS256 or HS512).
pub fn sign_with(alg: &str, claims: &Value, secret: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "typ": "JWT"}).to_string());
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let signature = match alg {
        "HS256" => {
            let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
            m.update(input.as_bytes());
            m.finalize().into_bytes().to_vec()
        }
        _ => {
            let mut m = Hmac::<sha2::Sha512>::new_from_slice(secret.as_bytes()).expect("key");
            m.update(input.as_bytes());
            m.finalize().into_bytes().to_vec()
        }
    };
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// A token as a `widget_request` to account `acme` carries it.
pub fn claims() -> Value {
    json!({
        "iss": "https://acme.kommo.com",
        "aud": AUDIENCE,
        "jti": "8b1d0f3e-5a7c-4e2b-9d61-3f0a2c4b6e81",
        "iat": NOW - 5,
        "nbf": NOW - 5,
        "exp": NOW + 295,
        "account_id": 30112233,
        "client_uuid": INTEGRATION,
    })
}

pub fn token() -> String {
    sign_with("HS512", &claims(), SECRET)
}

/// `claims()` with `changes` merged in (a `null` removes the claim).
pub fn token_with(changes: Value) -> String {
    let mut c = claims();
    for (k, v) in changes.as_object().expect("object") {
        if v.is_null() {
            c.as_object_mut().expect("object").remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    sign_with("HS512", &c, SECRET)
}

/// Account `acme` with its API at `api_base_url` (a mock server), when given.
pub fn config(api_base_url: Option<&str>) -> KommoConfig {
    let mut acme = KommoAccount::new(ACCESS_TOKEN);
    acme.api_base_url = api_base_url.map(str::to_owned);
    acme.policy = Some("acme-default".into());
    KommoConfig::new(INTEGRATION, SECRET).account("acme", acme)
}

pub fn kommo(api_base_url: Option<&str>) -> Kommo {
    Kommo::new(config(api_base_url)).expect("config")
}

pub const RETURN_URL: &str = "https://acme.kommo.com/api/v4/salesbot/4127/continue/88213";

/// A form body as accounts send it.
pub fn form(token: &str, return_url: &str, data: &[(&str, &str)]) -> Vec<u8> {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    s.append_pair("token", token);
    for (k, v) in data {
        s.append_pair(&format!("data{k}"), v);
    }
    s.append_pair("return_url", return_url);
    s.finish().into_bytes()
}
