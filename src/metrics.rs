//! The `metrics` feature. The names, kinds and labels recorded here are
//! documented for users in the crate root (`src/lib.rs`, section
//! "Metrics"): keep that table in step with [`Metrics::new`].

use metrics::{Gauge, Histogram};

use crate::status::Status;

#[derive(Debug)]
pub(crate) struct Metrics {
    size: Gauge,
    idle: Gauge,
    in_use: Gauge,
    waiting: Gauge,
    pub(crate) acquire_wait: Histogram,
    pub(crate) create_time: Histogram,
    pub(crate) hold_time: Histogram,
}

impl Metrics {
    pub(crate) fn new(pool: &str) -> Self {
        let label = || ("pool", pool.to_owned());
        Self {
            size: metrics::gauge!("quickslot_size", &[label()]),
            idle: metrics::gauge!("quickslot_idle", &[label()]),
            in_use: metrics::gauge!("quickslot_in_use", &[label()]),
            waiting: metrics::gauge!("quickslot_waiting", &[label()]),
            acquire_wait: metrics::histogram!("quickslot_acquire_wait_seconds", &[label()]),
            create_time: metrics::histogram!("quickslot_create_seconds", &[label()]),
            hold_time: metrics::histogram!("quickslot_hold_seconds", &[label()]),
        }
    }

    pub(crate) fn publish(&self, status: &Status) {
        self.size.set(status.size as f64);
        self.idle.set(status.idle as f64);
        self.in_use.set(status.in_use as f64);
        self.waiting.set(status.waiting as f64);
    }
}
