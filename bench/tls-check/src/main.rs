//! Cancel on drop over TLS: the next user's wait after a `pg_sleep(5)`
//! dropped at 100 ms, pool of 1, quickslot's adapter with an openssl TLS
//! connector, for `sslmode=require` and `sslmode=prefer` with the server's
//! TLS on, and `sslmode=prefer` with it off (the connection is then plain,
//! and so must its cancel requests be). Each must reuse its one connection
//! for every round: a cancel request that could not be confirmed would
//! have it replaced.
//!
//! Its own crate, outside the workspace, because openssl needs its
//! development files (Debian: `libssl-dev`, `pkg-config`), which the rest
//! of the project does not:
//!
//! ```text
//! scripts/with-postgres cargo run --release --manifest-path bench/tls-check/Cargo.toml
//! ```
//!
//! It turns TLS on in the server if needed (a self-signed certificate
//! written into the data directory, which must be on this machine, then
//! `ALTER SYSTEM SET ssl = on` and a reload) and off again for the last
//! case: use it only on a throw-away server.

use std::time::{Duration, Instant};

use quickslot::postgres::{parse_config, Config};

const SLEEP: &str = "SELECT pg_sleep(5)";
const CUT: Duration = Duration::from_millis(100);

fn summary(name: &str, mut waits: Vec<Duration>) -> String {
    waits.sort();
    let at = |p: f64| waits[((waits.len() as f64 - 1.0) * p).round() as usize];
    format!(
        "| {name} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
        waits.len(),
        waits[0].as_secs_f64() * 1e3,
        at(0.5).as_secs_f64() * 1e3,
        at(0.9).as_secs_f64() * 1e3,
        waits[waits.len() - 1].as_secs_f64() * 1e3,
    )
}

mod tls {
    use std::time::Duration;

    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
    use quickslot::postgres::tokio_postgres::config::SslMode;
    use quickslot::postgres::{tokio_postgres, Config, NoTls, PgManager};

    fn self_signed() -> (String, String) {
        use openssl::asn1::Asn1Time;
        use openssl::bn::BigNum;
        use openssl::hash::MessageDigest;
        use openssl::pkey::PKey;
        use openssl::rsa::Rsa;
        use openssl::x509::{X509Builder, X509NameBuilder};
        let key = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("key");
        let mut name = X509NameBuilder::new().expect("name");
        name.append_entry_by_text("CN", "localhost").expect("cn");
        let name = name.build();
        let mut cert = X509Builder::new().expect("x509");
        cert.set_version(2).expect("version");
        cert.set_subject_name(&name).expect("subject");
        cert.set_issuer_name(&name).expect("issuer");
        cert.set_pubkey(&key).expect("pubkey");
        cert.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
            .expect("not before");
        cert.set_not_after(&Asn1Time::days_from_now(2).expect("time"))
            .expect("not after");
        let serial = BigNum::from_u32(1)
            .expect("bn")
            .to_asn1_integer()
            .expect("serial");
        cert.set_serial_number(&serial).expect("serial");
        cert.sign(&key, MessageDigest::sha256()).expect("sign");
        let cert = cert.build();
        (
            String::from_utf8(cert.to_pem().expect("pem")).expect("utf8"),
            String::from_utf8(key.private_key_to_pem_pkcs8().expect("pem")).expect("utf8"),
        )
    }

    fn connector() -> postgres_openssl::MakeTlsConnector {
        let mut builder = SslConnector::builder(SslMethod::tls()).expect("ssl");
        // A self-signed certificate: this measures the cancel path, not
        // verification.
        builder.set_verify(SslVerifyMode::NONE);
        postgres_openssl::MakeTlsConnector::new(builder.build())
    }

    async fn tls_works(config: &Config) -> bool {
        let mut config = config.clone();
        config.ssl_mode(SslMode::Require);
        config.connect(connector()).await.is_ok()
    }

    /// Turns TLS on in the server if it is off.
    pub(super) async fn ensure_server_tls(config: &Config, url: &str) {
        if tls_works(config).await {
            return;
        }
        let (admin, connection) = tokio_postgres::connect(url, NoTls).await.expect("admin");
        tokio::spawn(connection);
        let (cert, key) = self_signed();
        let dir: String = admin
            .query_one("SHOW data_directory", &[])
            .await
            .expect("data_directory")
            .get(0);
        // Written from here, so the server must share this machine (as with
        // scripts/with-postgres): COPY would leave the key readable by all,
        // which the server refuses.
        let owner = std::fs::metadata(&dir).unwrap_or_else(|e| {
            panic!("--tls needs the server's data directory {dir} on this machine: {e}")
        });
        for (file, pem) in [("qs_bench.crt", cert), ("qs_bench.key", key)] {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let path = std::path::Path::new(&dir).join(file);
            std::fs::write(&path, pem).expect("write the certificate");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).expect("chown");
        }
        // One statement each: ALTER SYSTEM refuses to run in the implicit
        // transaction of a multi-statement string.
        for sql in [
            "ALTER SYSTEM SET ssl_cert_file = 'qs_bench.crt'",
            "ALTER SYSTEM SET ssl_key_file = 'qs_bench.key'",
            "ALTER SYSTEM SET ssl = on",
            "SELECT pg_reload_conf()",
        ] {
            admin.batch_execute(sql).await.expect("turn TLS on");
        }
        for _ in 0..100 {
            if tls_works(config).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not turn TLS on (see its log)");
    }

    /// Turns the server's TLS off (or on again) and waits until new
    /// connections see it.
    pub(super) async fn set_server_tls(url: &str, on: bool) {
        let (admin, connection) = tokio_postgres::connect(url, NoTls).await.expect("admin");
        tokio::spawn(connection);
        let sql = if on {
            "ALTER SYSTEM SET ssl = on"
        } else {
            "ALTER SYSTEM SET ssl = off"
        };
        admin.batch_execute(sql).await.expect("ssl");
        admin
            .batch_execute("SELECT pg_reload_conf()")
            .await
            .expect("reload");
        let config: Config = url.parse().expect("url");
        for _ in 0..100 {
            if tls_works(&config).await == on {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server's TLS did not change");
    }

    pub(super) fn pool(
        config: &Config,
        mode: SslMode,
    ) -> quickslot::Pool<PgManager<postgres_openssl::MakeTlsConnector>> {
        let mut config = config.clone();
        config.ssl_mode(mode);
        PgManager::new(config, connector())
            .pool_builder()
            .max_size(1)
            .build()
            .expect("pool")
    }
}

async fn tls_rounds(config: &Config, url: &str, rounds: usize) {
    use quickslot::postgres::tokio_postgres::config::SslMode;
    tls::ensure_server_tls(config, url).await;
    println!("With a TLS connector (openssl), next user's wait after a `pg_sleep(5)` dropped at 100 ms:\n");
    println!("| sslmode, server | rounds | min | p50 | p90 | max | connections made | TLS |");
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for (mode, name, server_tls) in [
        (SslMode::Require, "require, TLS on", true),
        (SslMode::Prefer, "prefer, TLS on", true),
        // The connection is plain: its cancel requests must be too.
        (SslMode::Prefer, "prefer, TLS off", false),
    ] {
        if !server_tls {
            tls::set_server_tls(url, false).await;
        }
        let pool = tls::pool(config, mode);
        let tls_used: bool = pool
            .acquire()
            .await
            .expect("acquire")
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .expect("pg_stat_ssl")
            .get(0);
        let mut waits = Vec::new();
        for _ in 0..rounds * 4 {
            let client = pool.acquire().await.expect("acquire");
            let cut = tokio::time::timeout(CUT, client.query(SLEEP, &[])).await;
            assert!(cut.is_err(), "the sleep finished?");
            drop(client);
            let t0 = Instant::now();
            let next = pool.acquire().await.expect("next acquire");
            next.query_one("SELECT 1", &[]).await.expect("SELECT 1");
            waits.push(t0.elapsed());
        }
        let made = pool.status().created;
        let row = summary(name, waits);
        println!("{row} {made} | {tls_used} |");
        assert_eq!(tls_used, server_tls, "{name}");
        assert_eq!(
            made, 1,
            "{name}: a cancel was not confirmed: connections were replaced"
        );
    }
}

fn main() {
    let Ok(url) = std::env::var("QUICKSLOT_PG_URL") else {
        eprintln!(
            "QUICKSLOT_PG_URL is not set; run: scripts/with-postgres \
             cargo run --release --manifest-path bench/tls-check/Cargo.toml"
        );
        return;
    };
    let config = parse_config(&url).expect("QUICKSLOT_PG_URL");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(tls_rounds(&config, &url, 5));
}
