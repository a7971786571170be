#![cfg(feature = "postgres")]
//! Connection-string and `PG*` environment parsing (no server needed).

use std::collections::HashMap;
use std::time::Duration;

use quickslot::postgres::tokio_postgres::config::{
    ChannelBinding, Host, LoadBalanceHosts, SslMode, TargetSessionAttrs,
};
use quickslot::postgres::{
    config_from_env_map, parse_config, ConfigError, PgManager, RecyclingMethod, ENV_VARS,
};

fn env(pairs: &[(&str, &str)]) -> Result<quickslot::postgres::Config, ConfigError> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    config_from_env_map(|k| map.get(k).cloned())
}

fn invalid_var(result: Result<quickslot::postgres::Config, ConfigError>) -> &'static str {
    match result {
        Err(ConfigError::InvalidEnv { var, .. }) => var,
        other => panic!("expected InvalidEnv, got {other:?}"),
    }
}

#[test]
fn url_and_key_value_strings_parse() {
    let c = parse_config("postgres://app:s3cret@db1:5432,db2:5433/orders?application_name=svc&connect_timeout=3&sslmode=require")
        .expect("url");
    assert_eq!(c.get_user(), Some("app"));
    assert_eq!(c.get_password(), Some(&b"s3cret"[..]));
    assert_eq!(c.get_dbname(), Some("orders"));
    assert_eq!(c.get_application_name(), Some("svc"));
    assert_eq!(
        c.get_hosts(),
        &[Host::Tcp("db1".into()), Host::Tcp("db2".into())]
    );
    assert_eq!(c.get_ports(), &[5432, 5433]);
    assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(3)));
    assert_eq!(c.get_ssl_mode(), SslMode::Require);

    let c = parse_config("host=localhost port=6543 user=app password='a b' dbname=x")
        .expect("key=value");
    assert_eq!(c.get_ports(), &[6543]);
    assert_eq!(c.get_password(), Some(&b"a b"[..]));
}

#[test]
fn malformed_strings_are_typed_errors() {
    for bad in [
        "port=notanumber",
        "sslmode=sometimes",
        "unknown_option=1",
        "host='unterminated",
        "postgres://user@host:99999/db",
        "postgres://user@[::1/db",
        "connect_timeout=soon",
    ] {
        match parse_config(bad) {
            Err(e @ ConfigError::Parse(_)) => {
                let shown = e.to_string();
                assert!(
                    shown.starts_with("invalid PostgreSQL connection string"),
                    "{shown}"
                );
                assert!(std::error::Error::source(&e).is_some());
            }
            other => panic!("{bad:?}: expected a parse error, got {other:?}"),
        }
    }
    assert!(matches!(
        PgManager::from_url("port=x"),
        Err(ConfigError::Parse(_))
    ));
}

#[test]
fn env_variables_map_to_the_config() {
    let c = env(&[
        ("PGHOST", "db1,/run/postgresql"),
        ("PGPORT", "5432,5433"),
        ("PGUSER", "app"),
        ("PGPASSWORD", "pw"),
        ("PGDATABASE", "orders"),
        ("PGAPPNAME", "svc"),
        ("PGOPTIONS", "-c search_path=app"),
        ("PGCONNECT_TIMEOUT", "7"),
        ("PGSSLMODE", "verify-full"),
        ("PGCHANNELBINDING", "require"),
        ("PGTARGETSESSIONATTRS", "read-write"),
        ("PGLOADBALANCEHOSTS", "random"),
    ])
    .expect("env");
    assert_eq!(
        c.get_hosts(),
        &[
            Host::Tcp("db1".into()),
            Host::Unix("/run/postgresql".into())
        ]
    );
    assert_eq!(c.get_ports(), &[5432, 5433]);
    assert_eq!(c.get_user(), Some("app"));
    assert_eq!(c.get_password(), Some(&b"pw"[..]));
    assert_eq!(c.get_dbname(), Some("orders"));
    assert_eq!(c.get_application_name(), Some("svc"));
    assert_eq!(c.get_options(), Some("-c search_path=app"));
    assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(7)));
    assert_eq!(c.get_ssl_mode(), SslMode::Require);
    assert_eq!(c.get_channel_binding(), ChannelBinding::Require);
    assert_eq!(c.get_target_session_attrs(), TargetSessionAttrs::ReadWrite);
    assert_eq!(c.get_load_balance_hosts(), LoadBalanceHosts::Random);
}

#[test]
fn env_defaults_and_libpq_quirks() {
    // Nothing set: localhost, tokio-postgres defaults elsewhere.
    let c = env(&[]).expect("empty env");
    assert_eq!(c.get_hosts(), &[Host::Tcp("localhost".into())]);
    assert!(c.get_ports().is_empty());
    assert_eq!(c.get_connect_timeout(), None);
    // Empty values count as unset.
    let c = env(&[("PGPORT", ""), ("PGUSER", "")]).expect("empty values");
    assert!(c.get_ports().is_empty());
    assert_eq!(c.get_user(), None);
    // libpq: a timeout of 1 means 2 s; 0 and negatives mean none.
    let c = env(&[("PGCONNECT_TIMEOUT", "1")]).expect("timeout 1");
    assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(2)));
    for none in ["0", "-5"] {
        let c = env(&[("PGCONNECT_TIMEOUT", none)]).expect("timeout");
        assert_eq!(c.get_connect_timeout(), None, "{none}");
    }
    // One port for several hosts is allowed.
    let c = env(&[("PGHOST", "a,b,c"), ("PGPORT", "6000")]).expect("one port");
    assert_eq!(c.get_ports(), &[6000]);
    // Addresses without names.
    let c = env(&[("PGHOSTADDR", "127.0.0.1,::1")]).expect("hostaddr");
    assert_eq!(c.get_hostaddrs().len(), 2);
    assert!(c.get_hosts().is_empty());
    // allow/prefer both mean "TLS if offered".
    let c = env(&[("PGSSLMODE", "allow")]).expect("allow");
    assert_eq!(c.get_ssl_mode(), SslMode::Prefer);
    let c = env(&[("PGSSLMODE", "disable")]).expect("disable");
    assert_eq!(c.get_ssl_mode(), SslMode::Disable);
}

#[test]
fn bad_env_values_name_the_variable() {
    assert_eq!(invalid_var(env(&[("PGPORT", "fifty")])), "PGPORT");
    assert_eq!(invalid_var(env(&[("PGPORT", "0")])), "PGPORT");
    assert_eq!(invalid_var(env(&[("PGPORT", "70000")])), "PGPORT");
    assert_eq!(
        invalid_var(env(&[("PGHOST", "a,b"), ("PGPORT", "1,2,3")])),
        "PGPORT"
    );
    assert_eq!(invalid_var(env(&[("PGHOST", "a,,b")])), "PGHOST");
    assert_eq!(
        invalid_var(env(&[("PGHOSTADDR", "not-an-ip")])),
        "PGHOSTADDR"
    );
    assert_eq!(
        invalid_var(env(&[("PGHOST", "a,b"), ("PGHOSTADDR", "127.0.0.1")])),
        "PGHOSTADDR"
    );
    assert_eq!(
        invalid_var(env(&[("PGCONNECT_TIMEOUT", "5s")])),
        "PGCONNECT_TIMEOUT"
    );
    assert_eq!(invalid_var(env(&[("PGSSLMODE", "maybe")])), "PGSSLMODE");
    assert_eq!(
        invalid_var(env(&[("PGSSLNEGOTIATION", "tls")])),
        "PGSSLNEGOTIATION"
    );
    assert_eq!(
        invalid_var(env(&[("PGCHANNELBINDING", "yes")])),
        "PGCHANNELBINDING"
    );
    assert_eq!(
        invalid_var(env(&[("PGTARGETSESSIONATTRS", "primary")])),
        "PGTARGETSESSIONATTRS"
    );
    assert_eq!(
        invalid_var(env(&[("PGLOADBALANCEHOSTS", "sometimes")])),
        "PGLOADBALANCEHOSTS"
    );
    let shown = env(&[("PGPORT", "fifty")])
        .expect_err("bad port")
        .to_string();
    assert!(
        shown.contains("PGPORT") && shown.contains("fifty"),
        "{shown}"
    );
}

#[test]
fn env_var_list_is_complete() {
    // Every variable the parser reads is listed (each one is validated
    // above); a junk value for each of the validated ones is rejected.
    let validated = [
        "PGHOSTADDR",
        "PGPORT",
        "PGCONNECT_TIMEOUT",
        "PGSSLMODE",
        "PGSSLNEGOTIATION",
        "PGCHANNELBINDING",
        "PGTARGETSESSIONATTRS",
        "PGLOADBALANCEHOSTS",
    ];
    for var in validated {
        assert!(ENV_VARS.contains(&var), "{var}");
        assert_eq!(invalid_var(env(&[(var, "\u{1F600}junk")])), var);
    }
    for var in [
        "PGHOST",
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
        "PGAPPNAME",
        "PGOPTIONS",
    ] {
        assert!(ENV_VARS.contains(&var), "{var}");
        env(&[(var, "x")]).expect("free-form value");
    }
}

#[test]
fn manager_settings_round_trip() {
    let m = PgManager::from_url("host=localhost user=app")
        .expect("url")
        .recycling_method(RecyclingMethod::Verified)
        .verify_window(Duration::from_millis(250))
        .statement_cache_capacity(3);
    assert_eq!(m.configured_recycling_method(), RecyclingMethod::Verified);
    assert_eq!(m.configured_verify_window(), Duration::from_millis(250));
    assert_eq!(m.config().get_user(), Some("app"));
    let shown = format!("{m:?}");
    assert!(shown.contains("Verified"), "{shown}");
    // The password never shows up in Debug output.
    let m = PgManager::from_url("postgres://app:hunter2@localhost/db").expect("url");
    assert!(!format!("{m:?}").contains("hunter2"));
}

/// The crate root's names and the adapter's import together without a clash.
#[test]
fn root_and_adapter_names_import_together() {
    #[allow(unused_imports)]
    use quickslot::postgres::{AfterConnectError, AfterConnectFuture, PgError, PgManager};
    #[allow(unused_imports)]
    use quickslot::{Error, HookError, HookFuture, Manager};

    fn is_manager<M: Manager<Error = PgError>>(_: &M) {}
    is_manager(&PgManager::from_url("host=localhost").expect("url"));
    let _: Option<Error<PgError>> = None;
    let _: Option<HookError> = None;
    let _: Option<AfterConnectError> = None;
    let _: Option<HookFuture<'static>> = None;
    let _: Option<AfterConnectFuture<'static>> = None;
}

/// The old names stay usable (deprecated) for one release.
#[test]
#[allow(deprecated)]
fn deprecated_old_names_still_work() {
    use quickslot::postgres::{Error, HookError, HookFuture, Manager};

    let m: Manager = Manager::from_url("host=localhost user=app")
        .expect("url")
        .recycling_method(RecyclingMethod::Clean)
        .verify_window(Duration::from_millis(7));
    assert_eq!(m.get_recycling_method(), RecyclingMethod::Clean);
    assert_eq!(m.get_verify_window(), Duration::from_millis(7));
    let e: Error = Error::Closed;
    assert!(matches!(e, Error::Closed));
    let m = m.after_connect(|_client| -> HookFuture<'_> {
        Box::pin(async { Err::<(), HookError>("no".into()) })
    });
    let _: quickslot::Builder<Manager> = m.pool_builder();
}

/// A small deterministic fuzz run: arbitrary strings built from the
/// characters that matter to both syntaxes never panic the parser (the
/// `cargo fuzz` target explores further).
#[test]
fn parser_never_panics_on_junk() {
    const PIECES: &[&str] = &[
        "postgres://",
        "postgresql://",
        "host=",
        "port=",
        "user=",
        "password=",
        "dbname=",
        "sslmode=",
        "connect_timeout=",
        "options=",
        "hostaddr=",
        "keepalives_idle=",
        "target_session_attrs=",
        "@",
        ":",
        "/",
        "?",
        "&",
        "=",
        ",",
        "[",
        "]",
        "'",
        "\\",
        " ",
        "%",
        "%2",
        "%zz",
        "%C3%A9",
        "é",
        "\u{1F600}",
        "\0",
        "localhost",
        "::1",
        "5432",
        "99999",
        "-1",
        "require",
        "a",
        "",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let mut parsed = 0usize;
    for _ in 0..50_000 {
        let len = (next() % 12) as usize;
        let mut s = String::new();
        for _ in 0..len {
            s.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
        }
        if parse_config(&s).is_ok() {
            parsed += 1;
        }
        // Environment: each variable set, with probability 1/2, to a random
        // concatenation of pieces.
        let mut map: HashMap<&str, String> = HashMap::new();
        for var in ENV_VARS {
            if next() % 2 == 0 {
                let mut value = String::new();
                for _ in 0..(next() % 4) {
                    value.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
                }
                map.insert(var, value);
            }
        }
        let _ = config_from_env_map(|k| map.get(k).cloned());
    }
    assert!(parsed > 0, "the generator also produces valid strings");
}

/// The adapter's default `idle_timeout` (10 min) yields to an explicit
/// `max_lifetime` below it, and a short `acquire_timeout` builds too.
#[test]
fn pool_builder_defaults_yield_to_explicit_settings() {
    let pool = quickslot::postgres::PgManager::from_url("postgres://app@localhost/app")
        .unwrap()
        .pool_builder()
        .max_lifetime(std::time::Duration::from_secs(5 * 60))
        .acquire_timeout(std::time::Duration::from_secs(2))
        .build();
    assert!(pool.is_ok(), "{:?}", pool.err());
}
