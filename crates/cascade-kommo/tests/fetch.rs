//! Reading a missing phone or email from Kommo's REST API (a mock server on 127.0.0.1).

mod common;

use cascade_kommo::{Kommo, KommoError, Mapped, WidgetRequest};
use common::*;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A contact as `GET /api/v4/contacts/{id}` answers it.
fn contact(id: u64, phones: Value, emails: Value) -> Value {
    json!({
        "id": id, "name": "Ann Lee", "first_name": "Ann", "last_name": "Lee",
        "responsible_user_id": 8375357, "group_id": 0, "created_by": 0, "updated_by": 0,
        "created_at": 1686673337, "updated_at": 1686748504, "closest_task_at": null, "is_deleted": false,
        "custom_fields_values": [
            {"field_id": 3, "field_name": "Position", "field_code": "POSITION", "field_type": "text",
             "values": [{"value": "CTO"}]},
            {"field_id": 1, "field_name": "Phone", "field_code": "PHONE", "field_type": "multitext", "values": phones},
            {"field_id": 2, "field_name": "Email", "field_code": "EMAIL", "field_type": "multitext", "values": emails}
        ],
        "account_id": 30112233,
        "_links": {"self": {"href": format!("https://acme.kommo.com/api/v4/contacts/{id}")}},
        "_embedded": {"tags": [], "companies": []}
    })
}

/// A lead as `GET /api/v4/leads/{id}?with=contacts` answers it.
fn lead(id: u64, contacts: Value) -> Value {
    json!({
        "id": id, "name": "Order 42", "price": 1200, "responsible_user_id": 8375357, "group_id": 0,
        "status_id": 58141807, "pipeline_id": 6950551, "loss_reason_id": null, "created_by": 0,
        "updated_by": 8375357, "created_at": 1686673337, "updated_at": 1686748504, "closed_at": null,
        "closest_task_at": null, "is_deleted": false, "custom_fields_values": null, "score": null,
        "account_id": 30112233, "labor_cost": null,
        "_links": {"self": {"href": format!("https://acme.kommo.com/api/v4/leads/{id}")}},
        "_embedded": {"tags": [], "companies": [], "contacts": contacts}
    })
}

async fn map(server: &MockServer, data: Value) -> Result<Mapped, KommoError> {
    let k: Kommo = kommo(Some(&server.uri()));
    let req = WidgetRequest {
        token: token(),
        return_url: format!("{}/api/v4/salesbot/4127/continue/88213", server.uri()),
        data: data.as_object().expect("object").clone(),
    };
    let verified = k.verify(&req, AUDIENCE, NOW).expect("verified");
    k.to_cascade(&verified, &req).await
}

#[tokio::test]
async fn a_lead_s_main_contact_gives_the_missing_phone() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v4/leads/5521"))
        .and(query_param("with", "contacts"))
        .and(header("authorization", format!("Bearer {ACCESS_TOKEN}").as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(lead(5521, json!([{"id": 901, "is_main": false}, {"id": 902, "is_main": true}]))),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v4/contacts/902"))
        .and(header("authorization", format!("Bearer {ACCESS_TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(contact(
            902,
            json!([{"value": "8 (999) 111-22-33", "enum_id": 1, "enum_code": "WORK"},
                   {"value": "+7 (999) 123-45-67", "enum_id": 2, "enum_code": "MOB"}]),
            json!([{"value": "ann@example.com", "enum_id": 3, "enum_code": "WORK"}]),
        )))
        .expect(1)
        .mount(&server)
        .await;
    let mapped =
        map(&server, json!({"text": "Hi", "phone": "{{contact.phone}}", "lead_id": "5521"})).await.expect("mapped");
    assert_eq!(mapped.contact.phone.as_deref(), Some("+79991234567"), "the mobile number, normalized");
    assert_eq!(mapped.contact.email.as_deref(), Some("ann@example.com"));
    assert_eq!(mapped.contact.name.as_deref(), Some("Ann Lee"));
}

#[tokio::test]
async fn a_contact_id_gives_the_missing_email_and_keeps_the_given_phone() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v4/contacts/77"))
        .respond_with(ResponseTemplate::new(200).set_body_json(contact(
            77,
            json!([{"value": "+1 555 000 0000", "enum_code": "MOB"}]),
            json!([{"value": "ann@example.com", "enum_code": "PRIV"}]),
        )))
        .expect(1)
        .mount(&server)
        .await;
    let mapped = map(&server, json!({"text": "Hi", "phone": "+1 555 123 4567", "name": "Ann", "contact_id": 77}))
        .await
        .expect("mapped");
    assert_eq!(mapped.contact.phone.as_deref(), Some("+15551234567"), "the request's phone wins");
    assert_eq!(mapped.contact.email.as_deref(), Some("ann@example.com"));
    assert_eq!(mapped.contact.name.as_deref(), Some("Ann"));
}

#[tokio::test]
async fn nothing_is_fetched_when_phone_and_email_are_given() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(500)).expect(0).mount(&server).await;
    let mapped =
        map(&server, json!({"text": "Hi", "phone": "+15551234567", "email": "a@example.com", "lead_id": 5521}))
            .await
            .expect("mapped");
    assert_eq!(mapped.contact.email.as_deref(), Some("a@example.com"));
}

#[tokio::test]
async fn a_refused_access_token_is_an_upstream_error_without_the_token() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v4/contacts/77"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "title": "Unauthorized", "type": "https://httpstatus.es/401", "status": 401,
            "detail": format!("token {ACCESS_TOKEN} revoked")
        })))
        .mount(&server)
        .await;
    let e = map(&server, json!({"text": "Hi", "contact_id": 77})).await.expect_err("no address at all");
    assert!(matches!(e, KommoError::Upstream(_)), "{e:?}");
    assert_eq!(e.http_status(), 502);
    assert!(!e.to_string().contains(ACCESS_TOKEN), "{e}");
    // With one address in hand the cascade goes on.
    let mapped =
        map(&server, json!({"text": "Hi", "email": "a@example.com", "contact_id": 77})).await.expect("goes on");
    assert_eq!(mapped.contact.phone, None);
}

#[tokio::test]
async fn an_unknown_lead_names_the_field() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v4/leads/404"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let e = map(&server, json!({"text": "Hi", "lead_id": 404})).await.expect_err("no lead");
    assert_eq!((e.field(), e.http_status()), (Some("data.lead_id"), 422));
}

#[tokio::test]
async fn a_lead_without_contacts_or_numbers_leaves_the_request_without_address() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v4/leads/9"))
        .respond_with(ResponseTemplate::new(200).set_body_json(lead(9, json!([]))))
        .mount(&server)
        .await;
    let e = map(&server, json!({"text": "Hi", "lead_id": 9})).await.expect_err("no contact");
    assert_eq!(e.field(), Some("data.phone"));
}
