//! Loading and checking configurations: every problem named by key and source, environment
//! overrides, and a built engine and app.

use cascade_config::{Config, StoreConfig, check, from_toml, load};

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:9090"
public_url = "https://cascade.example.com"
secret = "0123456789abcdef0123456789abcdef"

[store]
kind = "memory"

[api_keys.crm]
hash = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
scopes = ["send", "read"]
callback_secret = "whsec-crm"
rate_limit = 100

[connections.wa-main]
adapter = "whatsapp-cloud"
access_token = "EAAG-token"
phone_number_id = "106540352242922"
app_secret = "app-secret"

[connections.sms-main]
adapter = "twilio"
account_sid = "AC00000000000000000000000000000001"
auth_token = "twilio-token"
from = "+15550009999"

[policies.default]
steps = [{ channel = "whatsapp", until = "read", timeout = "30s" }, { channel = "sms" }]
"#;

fn keys(problems: &[cascade_config::ConfigProblem]) -> Vec<&str> {
    problems.iter().map(|p| p.key.as_str()).collect()
}

#[test]
fn a_good_config_loads_with_its_values() {
    let c: Config = from_toml(GOOD).expect("valid");
    assert_eq!(c.server.listen.port(), 9090);
    assert!(matches!(c.store, StoreConfig::Memory));
    assert_eq!(c.connections.len(), 2);
    assert_eq!(c.policies["default"].steps.len(), 2);
    assert!(check(&c).is_empty());
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let bad = GOOD
        .replace("phone_number_id = \"106540352242922\"", "phone_number_id = \"+1 555\"")
        .replace("until = \"read\"", "until = \"replied\"")
        .replace("{ channel = \"sms\" }", "{ channel = \"telegram\" }")
        .replace("sha256:ba78", "sha1:ba78")
        .replace("rate_limit = 100", "rate_limit = 0")
        .replace("secret = \"0123456789abcdef0123456789abcdef\"", "secret = \"short\"");
    let problems = from_toml(&bad).expect_err("invalid").0;
    let keys = keys(&problems);
    for expected in [
        "connections.wa-main.phone_number_id",
        "policies.default.steps[1].channel",
        "api_keys.crm.hash",
        "api_keys.crm.rate_limit",
        "server.secret",
    ] {
        assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
    }
    // WhatsApp reports `read` but not... it does report replies (inbound), so `replied` is fine.
    assert!(!keys.contains(&"policies.default.steps[0].until"), "{keys:?}");
    let sms_until = from_toml(&GOOD.replace("{ channel = \"sms\" }", "{ channel = \"sms\", until = \"read\" }"))
        .expect_err("sms never reports read")
        .0;
    assert_eq!(keys_of(&sms_until), ["policies.default.steps[1].until"]);
    assert!(sms_until[0].message.contains("delivered"), "{}", sms_until[0].message);
}

#[test]
fn a_value_that_cannot_be_read_does_not_hide_the_problems_after_it() {
    let text = r#"
[server]
max_body = "big"

[engine]
send_timout = "5s"

[connections.wa]
adapter = "whatsapp-cloud"
access_token = "t"

[connections.tg]
adapter = "telegram-bot"
bot_token = "1:abc"

[policies.default]
steps = [{ channel = "whatsapp" }, { channel = "fax" }, { channel = "telegram", connections = ["tg2"] }]

[api_keys.crm]
hash = "md5:abc"
scopes = ["send"]

[sever]
listen = "127.0.0.1:1"
"#;
    let problems = from_toml(text).expect_err("invalid").0;
    let keys = keys_of(&problems);
    for expected in [
        "server.max_body",
        "engine.send_timout",
        "connections.wa.phone_number_id",
        "policies.default.steps[1].channel",
        "policies.default.steps[2].connections",
        "api_keys.crm.hash",
        "sever",
    ] {
        assert!(keys.iter().any(|k| k == expected), "{expected} missing from {keys:?}");
    }
    let missing = problems.iter().find(|p| p.key == "connections.wa.phone_number_id").expect("missing field");
    assert!(missing.message.contains("required"), "{}", missing.message);
    // The WhatsApp connection could not be read, but it would serve `whatsapp`: step 0 is fine.
    assert!(!keys.iter().any(|k| k == "policies.default.steps[0].channel"), "{keys:?}");
}

/// A connection that cannot be read still serves its adapter's default channel: the names the
/// config file uses are the adapters' own `ADAPTER` and `DEFAULT_CHANNEL`.
#[test]
fn an_unreadable_connection_serves_its_adapters_default_channel() {
    for (adapter, channel) in [
        (cascade_whatsapp::ADAPTER, cascade_whatsapp::DEFAULT_CHANNEL),
        (cascade_telegram::ADAPTER, cascade_telegram::DEFAULT_CHANNEL),
        (cascade_sms_twilio::ADAPTER, cascade_sms_twilio::DEFAULT_CHANNEL),
        (cascade_viber::ADAPTER, cascade_viber::DEFAULT_CHANNEL),
        (cascade_max::ADAPTER, cascade_max::DEFAULT_CHANNEL),
        (cascade_email::ADAPTER, cascade_email::DEFAULT_CHANNEL),
    ] {
        let text = format!(
            "[connections.c]\nadapter = \"{adapter}\"\nunknown_key = 1\n\n\
             [policies.default]\nsteps = [{{ channel = \"{channel}\" }}]\n"
        );
        let keys = keys_of(&from_toml(&text).expect_err("unreadable connection").0);
        assert!(keys.iter().any(|k| k.starts_with("connections.c")), "{adapter}: {keys:?}");
        assert!(!keys.iter().any(|k| k.starts_with("policies")), "{adapter} serves {channel}: {keys:?}");
        let other = keys_of(&from_toml(&text.replace(&format!("\"{channel}\" }}"), "\"fax\" }")).expect_err("").0);
        assert!(other.iter().any(|k| k == "policies.default.steps[0].channel"), "{adapter} serves no fax: {other:?}");
    }
}

fn keys_of(p: &[cascade_config::ConfigProblem]) -> Vec<String> {
    p.iter().map(|p| p.key.clone()).collect()
}

#[test]
fn unknown_keys_and_wrong_types_name_the_key() {
    let problems = from_toml("[server]\nlisen = \"127.0.0.1:1\"\n").expect_err("unknown").0;
    assert_eq!(problems[0].key, "server.lisen");
    assert!(problems[0].message.contains("listen"), "suggests the known keys: {}", problems[0].message);
    let problems = from_toml("[engine]\nsend_timout = \"5s\"\n").expect_err("unknown engine key").0;
    assert_eq!(problems[0].key, "engine.send_timout");
    let problems = from_toml("[server]\nmax_body = \"big\"\n").expect_err("type").0;
    assert_eq!(problems[0].key, "server.max_body");
    let problems = from_toml("[connections.x]\nadapter = \"pigeon\"\n").expect_err("adapter").0;
    assert!(problems[0].key.starts_with("connections.x"), "{problems:?}");
    assert!(problems[0].message.contains("whatsapp-cloud"), "lists the adapters: {}", problems[0].message);
    let problems = from_toml("[store]\nkind = \"postgres\"\nurl = \"mysql://x\"\n").expect_err("url").0;
    assert!(keys(&problems).contains(&"store.url"), "{problems:?}");
    let none = from_toml("").expect_err("no connections").0;
    assert_eq!(keys(&none), ["connections"]);
}

#[test]
// figment's Jail closure returns figment's own (large) error type.
#[allow(clippy::result_large_err)]
fn the_file_and_environment_overrides_are_named() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("cascade.toml", GOOD)?;
        jail.set_env("CASCADE_SERVER__LISTEN", "127.0.0.1:7070");
        jail.set_env("CASCADE_API_KEYS__CRM__CALLBACK_SECRET", "from-env");
        // Other CASCADE_ variables are not configuration.
        jail.set_env("CASCADE_CONFIG", "cascade.toml");
        jail.set_env("CASCADE_TEST_DATABASE_URL", "postgres://x");
        let c = load(Some("cascade.toml".as_ref())).expect("valid");
        assert_eq!(c.server.listen.port(), 7070, "CASCADE_SERVER__LISTEN wins over the file");
        assert_eq!(
            c.api_keys["crm"].callback_secret.as_ref().map(|s| s.expose().to_owned()).as_deref(),
            Some("from-env")
        );

        jail.set_env("CASCADE_SERVER__MAX_BODY", "lots");
        let problems = load(Some("cascade.toml".as_ref())).expect_err("bad env").0;
        assert_eq!(problems[0].key, "server.max_body");
        let source = problems[0].source.clone().unwrap_or_default();
        assert!(source.contains("CASCADE_SERVER__MAX_BODY") || source.contains("environment"), "{source}");

        jail.create_file("broken.toml", "[server]\nmax_body = \"lots\"\n")?;
        jail.clear_env();
        let problems = load(Some("broken.toml".as_ref())).expect_err("bad file").0;
        assert!(problems[0].to_string().contains("broken.toml"), "{}", problems[0]);
        let missing = load(Some("nope.toml".as_ref())).expect_err("missing").0;
        assert!(missing[0].to_string().contains("nope.toml"));
        Ok(())
    });
}

#[test]
fn trace_export_keys_load_and_are_checked() {
    let c = from_toml(&GOOD.replace(
        "[server]\n",
        "[server]\notlp_endpoint = \"http://127.0.0.1:4318\"\nservice_name = \"cascade-eu\"\n\
         otlp_headers = { authorization = \"Bearer otel-token\" }\n",
    ))
    .expect("valid");
    assert_eq!(c.server.otlp_endpoint.as_ref().map(|u| u.as_str()), Some("http://127.0.0.1:4318/"));
    assert_eq!(c.server.service_name, "cascade-eu");
    assert_eq!(c.server.otlp_headers["authorization"].expose(), "Bearer otel-token");
    assert!(!format!("{c:?}").contains("otel-token"), "header values are secrets");

    let defaults = from_toml(GOOD).expect("valid");
    assert_eq!(defaults.server.otlp_endpoint, None, "no trace export unless asked for");
    assert_eq!(defaults.server.service_name, "cascade-server");

    for (bad, key) in [
        ("otlp_endpoint = \"127.0.0.1:4318\"", "server.otlp_endpoint"),
        ("otlp_endpoint = \"not a url\"", "server.otlp_endpoint"),
        ("otlp_endpoint = \"ftp://collector:4318\"", "server.otlp_endpoint"),
        ("otlp_headers = { \"x key\" = \"v\" }", "server.otlp_headers.x key"),
        ("otlp_headers = { x-key = \"a\\nb\" }", "server.otlp_headers.x-key"),
        ("service_name = \" \"", "server.service_name"),
    ] {
        let problems = from_toml(&GOOD.replace("[server]\n", &format!("[server]\n{bad}\n"))).expect_err(bad).0;
        assert_eq!(keys(&problems), [key], "{bad}: {problems:?}");
    }
}

#[test]
// figment's Jail closure returns figment's own (large) error type.
#[allow(clippy::result_large_err)]
fn trace_export_can_be_set_from_the_environment() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("cascade.toml", GOOD)?;
        jail.set_env("CASCADE_SERVER__OTLP_ENDPOINT", "https://otel.example.com:4318");
        jail.set_env("CASCADE_SERVER__OTLP_HEADERS__X_API_KEY", "from-env");
        let c = load(Some("cascade.toml".as_ref())).expect("valid");
        assert_eq!(c.server.otlp_endpoint.as_ref().map(|u| u.as_str()), Some("https://otel.example.com:4318/"));
        assert_eq!(c.server.otlp_headers["x_api_key"].expose(), "from-env");

        jail.set_env("CASCADE_SERVER__OTLP_ENDPOINT", "otel.example.com");
        let problems = load(Some("cascade.toml".as_ref())).expect_err("not a URL").0;
        assert_eq!(problems[0].key, "server.otlp_endpoint");
        let source = problems[0].source.clone().unwrap_or_default();
        assert!(source.contains("CASCADE_SERVER__OTLP_ENDPOINT") || source.contains("environment"), "{source}");
        Ok(())
    });
}

#[test]
fn retention_can_be_switched_off() {
    let with = |engine: &str| from_toml(&GOOD.replace("[store]\n", &format!("[engine]\n{engine}\n\n[store]\n")));
    let default = with("").expect("valid").engine.retention;
    assert_eq!(default, Some(std::time::Duration::from_secs(30 * 86_400)), "30 days unless set");
    let off = with("retention = \"off\"").expect("valid");
    assert_eq!(off.engine.retention, None, "\"off\" keeps finished cascades for ever");
    let longer = with("retention = \"90days\"").expect("valid");
    assert_eq!(longer.engine.retention, Some(std::time::Duration::from_secs(90 * 86_400)));
    for zero in ["retention = 0", "retention = \"0s\""] {
        let problems = with(zero).expect_err("zero is refused").0;
        assert_eq!(problems[0].key, "engine.retention", "{zero}: {problems:?}");
        assert!(problems[0].message.contains("\"off\""), "says how to switch it off: {}", problems[0].message);
    }
    let problems = with("retention = \"never\"").expect_err("not a duration").0;
    assert_eq!(problems[0].key, "engine.retention");
}

#[test]
fn the_upload_and_file_limits_default_to_the_same_100_mb() {
    let c = from_toml(GOOD).expect("valid");
    assert_eq!(c.server.max_upload, 100_000_000);
    assert_eq!(c.engine.max_file_size, c.server.max_upload);
}

#[test]
fn request_timeouts_default_and_are_checked() {
    use std::time::Duration;
    let c = from_toml(GOOD).expect("valid");
    assert_eq!(c.server.header_timeout, Duration::from_secs(10));
    assert_eq!(c.server.body_timeout, Duration::from_secs(30));
    assert_eq!(c.server.upload_timeout, Duration::from_secs(600));
    let with = |keys: &str| from_toml(&GOOD.replace("[server]\n", &format!("[server]\n{keys}\n")));
    let set = with("header_timeout = \"2s\"\nbody_timeout = \"5s\"\nupload_timeout = \"1h\"").expect("valid");
    assert_eq!(
        (set.server.header_timeout, set.server.body_timeout, set.server.upload_timeout),
        (Duration::from_secs(2), Duration::from_secs(5), Duration::from_secs(3600))
    );

    let problems = with("header_timeout = \"0s\"\nbody_timeout = 0\nupload_timeout = \"0ms\"\nlink_ttl = \"0s\"")
        .expect_err("zero")
        .0;
    assert_eq!(
        keys(&problems),
        ["server.header_timeout", "server.body_timeout", "server.upload_timeout", "server.link_ttl"],
        "each zero named once: {problems:?}"
    );
    assert!(problems.iter().all(|p| p.message.starts_with("must be more than 0")), "{problems:?}");

    let problems = with("body_timeout = \"2m\"\nupload_timeout = \"1m\"").expect_err("uploads shorter").0;
    assert_eq!(keys(&problems), ["server.upload_timeout"]);
    assert!(problems[0].message.contains("at least server.body_timeout (2m)"), "{}", problems[0].message);

    let problems = with("max_body = 100").expect_err("tiny body limit").0;
    assert_eq!(keys(&problems), ["server.max_body"]);
    let problems = with("header_timeout = \"soon\"").expect_err("not a duration").0;
    assert_eq!(keys(&problems), ["server.header_timeout"]);
}

#[tokio::test]
async fn a_config_builds_an_engine_and_an_app() {
    let dir = std::env::temp_dir().join(format!("cascade-config-test-{}", std::process::id()));
    let sqlite = format!("[store]\nkind = \"sqlite\"\npath = \"{}/db/cascade.db\"", dir.display());
    let text = GOOD.replace("[store]\nkind = \"memory\"", &sqlite);
    let mut c: Config = from_toml(&text).expect("valid");
    c.server.upload_dir = dir.join("uploads");
    let built = cascade_config::build(&c).await.expect("built");
    assert!(built.engine.pools().pool(&"whatsapp".into()).is_some());
    assert!(dir.join("db/cascade.db").exists(), "the SQLite file and its folder are created");
    assert!(dir.join("uploads").is_dir());
    built.engine.shutdown(std::time::Duration::from_secs(1)).await;
    let _ = std::fs::remove_dir_all(dir);
}
