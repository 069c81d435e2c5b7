//! Token verification with real HS512 tokens, and requests read as JSON and as forms.

mod common;

use cascade_kommo::{AuthError, Entity, KommoError, Verified, WidgetRequest, parse_widget_request};
use common::*;
use serde_json::json;

fn request(token: String) -> WidgetRequest {
    WidgetRequest { token, return_url: RETURN_URL.into(), data: serde_json::Map::new() }
}

fn refused(token: String) -> AuthError {
    match kommo(None).verify(&request(token), AUDIENCE, NOW) {
        Err(KommoError::Unauthorized(e)) => e,
        other => panic!("expected an auth error, got {other:?}"),
    }
}

#[test]
fn a_good_token_names_the_account() {
    let verified = kommo(None).verify(&request(token()), AUDIENCE, NOW).expect("valid");
    assert_eq!(verified.account, "acme");
    assert_eq!(verified.claims.account_id, Some(30112233));
    assert_eq!(verified.claims.client_uuid, INTEGRATION);
    assert_eq!(verified.entity, None);
    // The audience is compared as an origin: a trailing slash or the default port do not matter.
    assert!(kommo(None).verify(&request(token()), "https://cascade.example.com:443/", NOW).is_ok());
}

#[test]
fn hs256_is_accepted_too_but_not_none() {
    let verified = kommo(None).verify(&request(sign_with("HS256", &claims(), SECRET)), AUDIENCE, NOW);
    assert!(verified.is_ok(), "{verified:?}");
    let token = token();
    let (_, rest) = token.split_once('.').expect("header");
    let (payload, _) = rest.split_once('.').expect("payload");
    use base64::Engine;
    let none = format!("{}.{payload}.", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
    assert_eq!(refused(none), AuthError::Algorithm("none".into()));
}

#[test]
fn a_bad_signature_is_refused() {
    assert_eq!(refused(sign_with("HS512", &claims(), "another-integration's-secret")), AuthError::BadSignature);
    // A payload changed after signing.
    let good = token();
    let forged = token_with(json!({"client_uuid": "someone-else"}));
    let (head, _) = good.split_once('.').expect("dot");
    let forged_payload = forged.split('.').nth(1).expect("payload");
    let good_sig = good.rsplit('.').next().expect("sig");
    assert_eq!(refused(format!("{head}.{forged_payload}.{good_sig}")), AuthError::BadSignature);
    // Garbage.
    assert!(matches!(refused("not-a-jwt".into()), AuthError::Malformed(_)));
}

#[test]
fn float_expiry_with_leeway() {
    // Kommo's numeric claims may be floats.
    let t = token_with(json!({"exp": 1_699_999_950.0, "iat": 1_699_999_650.5, "nbf": 1_699_999_650.5}));
    let verified = kommo(None).verify(&request(t), AUDIENCE, NOW).expect("within the 60s leeway");
    assert_eq!(verified.claims.exp, 1_699_999_950.0);
    let t = token_with(json!({"exp": 1_699_999_940.0}));
    assert_eq!(refused(t), AuthError::Expired { exp: "1699999940".into(), now: NOW, leeway_secs: 60 });
    let t = token_with(json!({"exp": 1_699_999_939.75}));
    assert!(matches!(refused(t), AuthError::Expired { .. }));
    assert!(matches!(refused(token_with(json!({"exp": null}))), AuthError::Claim { claim: "exp", .. }));
    assert!(matches!(refused(token_with(json!({"nbf": NOW + 600}))), AuthError::NotYetValid { claim: "nbf", .. }));
}

#[test]
fn the_integration_must_be_ours() {
    let e = refused(token_with(json!({"client_uuid": "0a0b0c0d-0000-4000-8000-000000000000"})));
    assert_eq!(e, AuthError::WrongIntegration { found: "0a0b0c0d-0000-4000-8000-000000000000".into() });
    assert!(matches!(refused(token_with(json!({"client_uuid": null}))), AuthError::Claim { claim: "client_uuid", .. }));
    // The id is a UUID: case does not matter.
    let upper = token_with(json!({"client_uuid": INTEGRATION.to_uppercase()}));
    assert!(kommo(None).verify(&request(upper), AUDIENCE, NOW).is_ok());
}

#[test]
fn the_audience_must_be_us() {
    let e = refused(token_with(json!({"aud": "https://other-integration.example.net"})));
    assert!(matches!(e, AuthError::WrongAudience { .. }), "{e:?}");
    let e = kommo(None).verify(&request(token()), "http://cascade.example.com", NOW).expect_err("scheme");
    assert!(matches!(e, KommoError::Unauthorized(AuthError::WrongAudience { .. })), "{e:?}");
    let listed = token_with(json!({"aud": ["https://x.test", AUDIENCE]}));
    assert!(kommo(None).verify(&request(listed), AUDIENCE, NOW).is_ok(), "one of several audiences");
}

#[test]
fn the_account_must_be_configured() {
    assert_eq!(
        refused(token_with(json!({"iss": "https://globex.kommo.com"}))),
        AuthError::UnknownAccount("globex".into())
    );
    let amo = token_with(json!({"iss": "https://acme.amocrm.ru"}));
    assert_eq!(kommo(None).verify(&request(amo), AUDIENCE, NOW).expect("amocrm.ru").account, "acme");
}

#[test]
fn return_url_must_be_on_the_account() {
    let k = kommo(None);
    for foreign in [
        "https://globex.kommo.com/api/v4/salesbot/1/continue/2",
        "https://acme.kommo.com.attacker.test/api/v4/salesbot/1/continue/2",
        "https://attacker.test/?acme.kommo.com",
        "http://acme.kommo.com/api/v4/salesbot/1/continue/2",
        "http://127.0.0.1:9000/api/v4/salesbot/1/continue/2",
    ] {
        let req = WidgetRequest { return_url: foreign.into(), ..request(token()) };
        let e = k.verify(&req, AUDIENCE, NOW).expect_err(foreign);
        assert!(matches!(e, KommoError::Unauthorized(AuthError::ForeignReturnUrl { .. })), "{foreign}: {e:?}");
        assert_eq!(e.field(), Some("return_url"));
        assert_eq!(e.http_status(), 401);
    }
    let req = WidgetRequest { return_url: "not a url".into(), ..request(token()) };
    assert_eq!(k.verify(&req, AUDIENCE, NOW).expect_err("url").field(), Some("return_url"));
    // The configured api_base_url (a mock server in tests) is the account's too.
    let local = kommo(Some("http://127.0.0.1:9000"));
    let req =
        WidgetRequest { return_url: "http://127.0.0.1:9000/api/v4/salesbot/1/continue/2".into(), ..request(token()) };
    assert!(local.verify(&req, AUDIENCE, NOW).is_ok());
}

#[tokio::test]
async fn a_form_body_with_nested_keys_becomes_a_cascade() {
    let body = form(
        &token(),
        RETURN_URL,
        &[
            ("[text]", "Hello [Contact.Name], your order [Deal.Name] is ready"),
            ("[phone]", "+1 (555) 123-4567"),
            ("[email]", "{{contact.email}}"),
            ("[name]", "Ann Lee"),
            ("[policy]", "orders"),
            ("[deal][name]", "Order 42"),
            ("[deal][price]", "1200"),
            ("[deal][stage]", "{{lead.status}}"),
            ("[deal][items][]", "lamp"),
            ("[deal][items][]", "desk"),
            ("[contact][fields][city]", "Austin"),
        ],
    );
    let k = kommo(None);
    let req = parse_widget_request(Some("application/x-www-form-urlencoded; charset=UTF-8"), &body).expect("form");
    assert_eq!(req.return_url, RETURN_URL);
    let verified = k.verify(&req, AUDIENCE, NOW).expect("verified");
    let mapped = k.to_cascade(&verified, &req).await.expect("mapped without any lookup");
    assert_eq!(mapped.text, "Hello [Contact.Name], your order [Deal.Name] is ready");
    assert_eq!(mapped.contact.phone.as_deref(), Some("+15551234567"));
    assert_eq!(mapped.contact.email, None, "an unfilled placeholder is missing");
    assert_eq!(mapped.contact.name.as_deref(), Some("Ann Lee"));
    assert_eq!(mapped.contact.fields["city"], "Austin");
    assert_eq!(mapped.policy.as_deref(), Some("orders"));
    assert_eq!(mapped.variables, json!({"deal": {"name": "Order 42", "price": "1200", "items": ["lamp", "desk"]}}));
}

#[tokio::test]
async fn the_same_request_as_json_maps_the_same() {
    let body = json!({
        "token": token(),
        "return_url": RETURN_URL,
        "data": {"text": "Hi", "contact": {"phone": "+15551234567", "name": "{{contact.name}}"},
                 "policy": "", "deal": {"name": "Order 42"}}
    });
    let k = kommo(None);
    let req = parse_widget_request(Some("application/json"), body.to_string().as_bytes()).expect("json");
    let verified = k.verify(&req, AUDIENCE, NOW).expect("verified");
    let mapped = k.to_cascade(&verified, &req).await.expect("mapped");
    assert_eq!(mapped.contact.phone.as_deref(), Some("+15551234567"));
    assert_eq!(mapped.contact.name, None);
    assert_eq!(mapped.policy.as_deref(), Some("acme-default"), "an empty policy falls back to the account's");
    assert_eq!(mapped.variables, json!({"deal": {"name": "Order 42"}}));
}

#[tokio::test]
async fn missing_text_or_address_names_the_field() {
    let k = kommo(None);
    let map = |data: serde_json::Value| {
        let req = WidgetRequest { data: data.as_object().expect("object").clone(), ..request(token()) };
        let verified = k.verify(&req, AUDIENCE, NOW).expect("verified");
        (req, verified)
    };
    let (req, v) = map(json!({"text": "{{lead.cf.5521}}", "phone": "+15551234567"}));
    let e = k.to_cascade(&v, &req).await.expect_err("no text");
    assert_eq!((e.field(), e.http_status()), (Some("data.text"), 422));
    let (req, v) = map(json!({"text": "Hi", "phone": "{{contact.phone}}", "email": ""}));
    let e = k.to_cascade(&v, &req).await.expect_err("no address");
    assert_eq!((e.field(), e.http_status()), (Some("data.phone"), 422));
    let e = kommo(None)
        .verify(
            &WidgetRequest { data: json!({"lead_id": "abc"}).as_object().cloned().expect("o"), ..request(token()) },
            AUDIENCE,
            NOW,
        )
        .expect_err("not an id");
    assert_eq!(e.field(), Some("data.lead_id"));
}

#[test]
fn the_entity_comes_from_data() {
    let k = kommo(None);
    let with = |data: serde_json::Value| {
        let req = WidgetRequest { data: data.as_object().expect("object").clone(), ..request(token()) };
        k.verify(&req, AUDIENCE, NOW).expect("verified").entity
    };
    assert_eq!(with(json!({"lead_id": "5521"})), Some(Entity::Lead(5521)));
    assert_eq!(with(json!({"lead_id": "{{lead.id}}", "contact_id": 77})), Some(Entity::Contact(77)));
    assert_eq!(with(json!({"lead_id": ""})), None);
}

#[tokio::test]
async fn a_verified_request_kept_as_json_maps_the_same_without_its_token() {
    let k = kommo(None);
    let data = json!({"text": "Hi", "phone": "+1 555 123 4567", "email": "ann@example.com", "lead_id": "5521"});
    let req = WidgetRequest { data: data.as_object().expect("object").clone(), ..request(token()) };
    let verified = k.verify(&req, AUDIENCE, NOW).expect("verified");
    let kept = serde_json::to_string(&(&verified, &req)).expect("serialize");
    assert!(!kept.contains(&req.token) && !kept.contains("\"token\""), "the token is not kept: {kept}");
    let (verified_again, req_again): (Verified, WidgetRequest) = serde_json::from_str(&kept).expect("deserialize");
    assert_eq!(verified_again, verified);
    assert_eq!(req_again, WidgetRequest { token: String::new(), ..req.clone() });
    let mapped = k.to_cascade(&verified_again, &req_again).await.expect("mapped");
    assert_eq!(mapped, k.to_cascade(&verified, &req).await.expect("mapped"));
}
