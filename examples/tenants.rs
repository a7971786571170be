//! One pool per tenant, all under one PostgreSQL connection budget.
//!
//! ```text
//! scripts/with-postgres cargo run --features postgres --example tenants
//! # or against your own server:
//! QUICKSLOT_PG_URL=postgres://user:password@localhost/db cargo run --features postgres --example tenants
//! ```
//!
//! The budget is what the server allows this service: `max_connections`
//! less the reserved connections and the ones already open, less a margin,
//! at most 24. Each tenant's pool may use up to three quarters of it (so no
//! tenant can starve the others for good) and keeps its own idle
//! connections and line; a tenant that gets busy takes the connections of
//! idle tenants (after they have been idle for `--grace-ms`, default 0).
//!
//! It runs three phases: tenant 0 busy alone, then tenants 1 and 2 busy
//! while 0 idles, then all four busy. After each it prints each tenant's
//! connections, what the budget holds, and the peak number of the
//! service's backends that `pg_stat_activity` showed, and fails if that
//! ever went over the budget.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quickslot::postgres::{parse_config, PgManager, Pool};
use quickslot::Capacity;

const TENANTS: usize = 4;
const APP_PREFIX: &str = "quickslot-tenant-";

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn grace_from_args() -> Result<Duration> {
    let mut args = std::env::args().skip(1);
    let mut grace = Duration::ZERO;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--grace-ms" => {
                let v = args.next().ok_or("--grace-ms needs a value")?;
                grace = Duration::from_millis(v.parse()?);
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    Ok(grace)
}

async fn run() -> Result<()> {
    let grace = grace_from_args()?;
    let url = std::env::var("QUICKSLOT_PG_URL")
        .map_err(|_| "QUICKSLOT_PG_URL is not set (run it through scripts/with-postgres)")?;
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);

    // What the server leaves for this service.
    let setting = |name: &'static str| {
        let admin = &admin;
        async move {
            let v: String = admin.query_one(&format!("SHOW {name}"), &[]).await?.get(0);
            Ok::<usize, Box<dyn std::error::Error + Send + Sync>>(v.parse()?)
        }
    };
    let max = setting("max_connections").await?;
    let reserved = setting("superuser_reserved_connections").await?;
    let open: i64 = admin
        .query_one("SELECT count(*) FROM pg_stat_activity", &[])
        .await?
        .get(0);
    let free = max.saturating_sub(reserved + open as usize + 2);
    let budget = Capacity::new(free.min(24));
    budget.set_idle_grace(grace);
    if budget.max() < 2 {
        return Err(format!("the server has only {free} connections to spare").into());
    }
    let per_tenant = (budget.max() * 3 / 4).max(1);
    println!(
        "max_connections {max}, reserved {reserved}, open {open}: budget {} for {TENANTS} tenants, \
         up to {per_tenant} each, idle grace {grace:?}",
        budget.max()
    );

    let mut pools = Vec::new();
    for tenant in 0..TENANTS {
        let mut config = parse_config(&url)?;
        config.application_name(format!("{APP_PREFIX}{tenant}"));
        pools.push(
            PgManager::from_config(config)
                .pool_builder()
                .max_size(per_tenant)
                .capacity(&budget)
                .acquire_timeout(Duration::from_secs(10))
                .name(format!("tenant-{tenant}"))
                .build()?,
        );
    }

    // Watches the server's view of the service's connections.
    let peak = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (peak, stop) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            let pattern = format!("{APP_PREFIX}%");
            while !stop.load(Ordering::Relaxed) {
                let n: i64 = admin
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1",
                        &[&pattern],
                    )
                    .await?
                    .get(0);
                peak.fetch_max(n as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok::<(), tokio_postgres::Error>(())
        })
    };

    let phases: [(&str, &[usize]); 3] = [
        ("tenant 0 busy", &[0]),
        ("tenants 1 and 2 busy, 0 idle", &[1, 2]),
        ("all busy", &[0, 1, 2, 3]),
    ];
    for (name, busy) in phases {
        let started = Instant::now();
        let mut tasks = Vec::new();
        for &tenant in busy {
            for _ in 0..2 * per_tenant {
                let pool: Pool = pools[tenant].clone();
                tasks.push(tokio::spawn(async move {
                    for _ in 0..20 {
                        let client = pool.acquire().await?;
                        client.execute("SELECT pg_sleep(0.002)", &[]).await?;
                    }
                    Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
                }));
            }
        }
        for task in tasks {
            task.await??;
        }
        let sizes: Vec<String> = pools
            .iter()
            .map(|p| {
                let s = p.status();
                format!("{:>2} ({} reclaimed)", s.size, s.discarded.reclaimed)
            })
            .collect();
        println!(
            "{name:<30} {:>6.0?}  connections per tenant: {}  budget in use {}/{}",
            started.elapsed(),
            sizes.join(", "),
            budget.in_use(),
            budget.max()
        );
    }
    stop.store(true, Ordering::Relaxed);
    watcher.await??;
    let peak = peak.load(Ordering::Relaxed);
    println!(
        "peak backends on the server: {peak} (budget {})",
        budget.max()
    );
    if peak > budget.max() as u64 {
        return Err("the service went over its connection budget".into());
    }
    Ok(())
}
