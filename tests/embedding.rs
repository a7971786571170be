//! What crates that build their own pools on quickslot rely on: weak
//! handles, resource ids, and their own guard types.

use std::collections::HashSet;
use std::ops::{Deref, DerefMut};

use quickslot::{Manager, Pool, Pooled};

struct Conns;

impl Manager for Conns {
    type Resource = Vec<u8>;
    type Error = std::convert::Infallible;

    async fn create(&self) -> Result<Vec<u8>, Self::Error> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn a_weak_handle_does_not_keep_the_pool_alive_but_a_guard_does() {
    let pool = Pool::builder(Conns).max_size(2).build().unwrap();
    let weak = pool.downgrade();
    let guard = pool.acquire().await.unwrap();
    drop(pool);
    let again = weak.upgrade().expect("the guard keeps the pool alive");
    assert_eq!(again.status().in_use, 1);
    assert_eq!(Pooled::pool(&guard).status().max_size, 2);
    drop(again);
    drop(guard);
    assert!(weak.upgrade().is_none(), "no handle and no guard left");
}

#[tokio::test]
async fn resource_ids_are_unique_and_stable() {
    let pool = Pool::builder(Conns).max_size(4).build().unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(pool.acquire().await.unwrap());
    }
    let ids: HashSet<u64> = held.iter().map(|g| Pooled::info(g).id()).collect();
    assert_eq!(ids, (1..=4).collect());
    let first = Pooled::info(&held[0]).id();
    drop(held);
    let again = pool.acquire().await.unwrap();
    assert_eq!(
        Pooled::info(&again).id(),
        first,
        "FIFO reuse: the same object, the same id"
    );
    // A replacement gets a new id.
    Pooled::discard(again);
    let mut all = Vec::new();
    for _ in 0..4 {
        all.push(pool.acquire().await.unwrap());
    }
    let ids: HashSet<u64> = all.iter().map(|g| Pooled::info(g).id()).collect();
    assert_eq!(ids.len(), 4);
    assert!(ids.contains(&5) && !ids.contains(&first), "{ids:?}");
}

/// An adapter's own guard: a newtype over `Pooled`, with its own methods,
/// no extra allocation, and conversions both ways.
struct Buffer(Pooled<Conns>);

impl From<Pooled<Conns>> for Buffer {
    fn from(inner: Pooled<Conns>) -> Self {
        Buffer(inner)
    }
}

impl Buffer {
    fn into_inner(self) -> Pooled<Conns> {
        self.0
    }

    fn write_greeting(&mut self) {
        self.0.extend_from_slice(b"hello");
    }
}

impl Deref for Buffer {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

#[tokio::test]
async fn an_adapter_guard_wraps_and_unwraps_and_returns_on_drop() {
    assert_eq!(
        std::mem::size_of::<Buffer>(),
        std::mem::size_of::<Pooled<Conns>>(),
        "no extra allocation or field"
    );
    let pool = Pool::builder(Conns).max_size(1).build().unwrap();
    let mut buf = Buffer::from(pool.acquire().await.unwrap());
    buf.write_greeting();
    assert_eq!(&buf[..], b"hello");
    let inner = buf.into_inner();
    assert_eq!(inner.len(), 5);
    let buf = Buffer::from(inner);
    drop(buf);
    let s = pool.status();
    assert_eq!((s.size, s.idle), (1, 1));
    assert_eq!(
        pool.acquire().await.unwrap().len(),
        5,
        "the same buffer came back"
    );
}
