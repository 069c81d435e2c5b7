//! Every adapter's webhook intake, fed bytes no provider sends: arbitrary bytes and real
//! payloads broken in every way ([`cascade_testkit::mutate`]), signed so they reach the parser,
//! and with forged signatures. Whatever comes in, `Intake::receive` returns, within a deadline,
//! either events or an error that says what is wrong: a parse error with its reason for a
//! signed body, a signature error naming the signature for a forged one.
//!
//! Cases per property: 128, or `PROPTEST_CASES`.

mod intakes;

use std::time::Duration;

use cascade_channel_kit::{WebhookError, WebhookEvent, WebhookRequest};
use cascade_testkit::mutate::{Payload, apply, bytes, config, mutated, seeded, syntax_soup, within};
use intakes::{Provider, VERIFY_TOKEN, provider};
use proptest::prelude::*;
use proptest::sample::Index;

const CASES: u32 = 128;
/// Far more than any parse takes; only a hang comes near it.
const LIMIT: Duration = Duration::from_secs(5);

/// `Intake::receive` of `p` on `body` with these signature header bytes, under the deadline.
fn receive(p: &'static Provider, body: Vec<u8>, signature: Option<Vec<u8>>) -> Result<Vec<WebhookEvent>, WebhookError> {
    within(LIMIT, &format!("{} receive", p.connection), move || {
        let headers = p.headers(signature.as_deref());
        let url = p.url();
        p.intake.receive(&WebhookRequest::post(&url, &headers, &body))
    })
}

/// A correctly signed body is parsed or refused for its form, with a reason; never for its
/// signature.
fn signed_body_parses_or_says_why(p: &'static Provider, body: Payload) -> Result<(), TestCaseError> {
    let signature = p.signature(&body.0).into_bytes();
    match receive(p, body.0, Some(signature)) {
        Ok(_) => {}
        Err(WebhookError::Malformed(reason)) => prop_assert!(!reason.trim().is_empty(), "an empty reason"),
        Err(other) => prop_assert!(false, "a signed body refused with {other:?}"),
    }
    Ok(())
}

/// How a signature is forged.
#[derive(Clone, Debug)]
enum Forgery {
    /// No signature header.
    Missing,
    /// Any visible text.
    Random(String),
    /// The real signature of the seed, replayed on the changed body.
    Replay,
    /// The real signature of the body with one character changed, one dropped or one added.
    NearMiss(Index, u8),
    /// Bytes that are not text (allowed in a header, unreadable as a string).
    Opaque(Vec<u8>),
}

fn forgery() -> impl Strategy<Value = Forgery> {
    prop_oneof![
        Just(Forgery::Missing),
        "[!-~]{0,80}".prop_map(Forgery::Random),
        Just(Forgery::Replay),
        (any::<Index>(), 0u8..3).prop_map(|(i, how)| Forgery::NearMiss(i, how)),
        prop::collection::vec(0x80u8..=0xff, 1..40).prop_map(Forgery::Opaque),
    ]
}

/// Whether `a` and `b` are the same call to `p`'s signature (Twilio signs the parsed form, in
/// sorted order; the others the bytes).
fn same_signed_content(p: &Provider, a: &[u8], b: &[u8]) -> bool {
    if p.channel != "sms" {
        return a == b;
    }
    let sorted = |body: &[u8]| {
        let mut pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        pairs.sort();
        pairs
    };
    sorted(a) == sorted(b)
}

/// `signature` with one character replaced by one that differs even ignoring case (hex is
/// read in either case), dropped, or a character added.
fn near_miss(signature: &str, at: &Index, how: u8) -> String {
    let mut chars: Vec<char> = signature.chars().collect();
    let i = at.index(chars.len().max(1)).min(chars.len().saturating_sub(1));
    match how {
        0 if !chars.is_empty() => {
            let old = chars[i].to_ascii_lowercase();
            chars[i] = "0123456789abcdef".chars().find(|c| *c != old).unwrap_or('0');
        }
        1 if !chars.is_empty() => {
            chars.remove(i);
        }
        _ => chars.insert(i, '7'),
    }
    chars.into_iter().collect()
}

/// A mutated seed under a forged signature is refused for its signature, and the error says
/// so; the parser is never reached.
fn forged_signature_is_refused(
    p: &'static Provider,
    seed: &[u8],
    mutations: &[cascade_testkit::mutate::Mutation],
    forgery: Forgery,
) -> Result<(), TestCaseError> {
    let body = apply(seed, mutations);
    let header: Option<Vec<u8>> = match &forgery {
        Forgery::Missing => None,
        Forgery::Random(s) => Some(s.clone().into_bytes()),
        Forgery::Replay => {
            // A shared secret does not depend on the body: replaying it is not a forgery, nor
            // is an HMAC replayed on content that did not change.
            prop_assume!(p.signs_body && !same_signed_content(p, seed, &body));
            Some(p.signature(seed).into_bytes())
        }
        Forgery::NearMiss(at, how) => Some(near_miss(&p.signature(&body), at, *how).into_bytes()),
        Forgery::Opaque(b) => Some(b.clone()),
    };
    if let Some(h) = &header {
        prop_assume!(*h != p.signature(&body).into_bytes(), "the forgery is the real signature");
    }
    match receive(p, body, header) {
        Ok(events) => prop_assert!(false, "accepted under a forged signature ({forgery:?}): {events:?}"),
        Err(e) => {
            prop_assert!(e.is_auth(), "{forgery:?} refused as {e:?}, not as a signature error");
            prop_assert!(e.to_string().contains("signature"), "the error does not name the signature: {e}");
            if matches!(forgery, Forgery::Missing | Forgery::Opaque(_)) {
                prop_assert_eq!(e, WebhookError::MissingSignature { header: canonical(p.signature_header) });
            }
        }
    }
    Ok(())
}

/// The header name as the adapter spells it in its errors.
fn canonical(header: &str) -> &'static str {
    match header {
        "x-hub-signature-256" => "X-Hub-Signature-256",
        "x-telegram-bot-api-secret-token" => "X-Telegram-Bot-Api-Secret-Token",
        "x-twilio-signature" => "X-Twilio-Signature",
        "x-viber-content-signature" => "X-Viber-Content-Signature",
        "x-max-bot-api-secret" => "X-Max-Bot-Api-Secret",
        "x-cascade-signature" => "X-Cascade-Signature",
        other => panic!("no adapter signs with {other}"),
    }
}

/// The same three properties for each adapter, in a module named after it.
macro_rules! intake_properties {
    ($($adapter:ident => $connection:literal),* $(,)?) => {$(
        mod $adapter {
            use super::*;

            proptest! {
                #![proptest_config(config(CASES))]

                #[test]
                fn signed_arbitrary_bytes_parse_or_say_why(body in prop_oneof![bytes(2048), syntax_soup(80)]) {
                    signed_body_parses_or_says_why(provider($connection), body)?;
                }

                #[test]
                fn signed_mutated_payloads_parse_or_say_why(body in mutated(provider($connection).seeds.clone())) {
                    signed_body_parses_or_says_why(provider($connection), body)?;
                }

                #[test]
                fn forged_signatures_are_refused_naming_the_signature(
                    (seed, mutations) in seeded(provider($connection).seeds.clone()),
                    forgery in forgery(),
                ) {
                    forged_signature_is_refused(provider($connection), &seed, &mutations, forgery)?;
                }
            }
        }
    )*};
}

intake_properties! {
    whatsapp => "wa-1",
    telegram => "tg-1",
    twilio => "sms-1",
    viber => "viber-1",
    max => "max-1",
    webhook_channel => "line-1",
}

/// Query strings made of the handshake's own parameters, right and wrong, and noise.
fn handshake_query() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("hub.mode=subscribe".to_owned()),
        Just("hub.mode=unsubscribe".to_owned()),
        Just(format!("hub.verify_token={VERIFY_TOKEN}")),
        Just("hub.verify_token=verify-m".to_owned()),
        Just("hub.verify_token=".to_owned()),
        Just("hub.challenge=1158201444".to_owned()),
        Just("hub.challenge=".to_owned()),
        Just("%FF%FE=%zz".to_owned()),
        "[!-~&&[^#]]{0,30}",
    ];
    prop::collection::vec(piece, 0..6).prop_map(|pieces| pieces.join("&"))
}

proptest! {
    #![proptest_config(config(CASES))]

    /// WhatsApp's GET handshake answers the challenge only to our verify token, and refuses
    /// anything else with a reason.
    #[test]
    fn whatsapp_handshake_answers_only_its_token(query in handshake_query()) {
        let p = provider("wa-1");
        let url = format!("{}?{query}", p.url());
        let answer = within(LIMIT, "wa-1 handshake", move || {
            let headers = axum::http::HeaderMap::new();
            p.intake.handshake(&WebhookRequest { method: "GET", url: &url, headers: &headers, body: b"" })
        });
        let pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let last = |name: &str| pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        match answer {
            Some(Ok(challenge)) => {
                prop_assert_eq!(last("hub.mode"), Some("subscribe"));
                prop_assert_eq!(last("hub.verify_token"), Some(VERIFY_TOKEN));
                prop_assert_eq!(Some(challenge.as_str()), last("hub.challenge"));
            }
            Some(Err(e)) => {
                prop_assert!(matches!(&e, WebhookError::Handshake(reason) if !reason.is_empty()), "{e:?}");
                prop_assert!(last("hub.verify_token") != Some(VERIFY_TOKEN)
                    || last("hub.mode") != Some("subscribe")
                    || last("hub.challenge").is_none(), "refused a right handshake: {e}");
            }
            None => prop_assert!(false, "WhatsApp has a handshake"),
        }
    }
}
