//! Why the cache uses sharded `parking_lot::RwLock<HashMap>` rather than `DashMap`: the same workloads on
//! both maps (same identity hasher, since series ids are already hashes), plus the real cache's insert
//! and append throughput.
//!
//! - `insert`: creating 100,000 new entries.
//! - `lookup`: ingest's hot path, finding existing entries by id.
//! - `lookup_while_scanning`: lookups on one thread while another thread iterates the whole map (the sweep
//!   and `!=`-only selectors), the case where DashMap's shard locking and ours differ most.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use dashmap::DashMap;
use parking_lot::RwLock;
use surge_model::{Labels, Sample};
use surge_store::cache::IdBuildHasher;
use surge_store::{CacheOptions, SeriesCache, SeriesId};

const N: u64 = 100_000;
const SHARDS: usize = 32;

fn ids() -> Vec<SeriesId> {
    (0..N).map(|i| SeriesId(xxhash_like(i))).collect()
}

fn xxhash_like(i: u64) -> u64 {
    // splitmix64: ids are uniformly distributed hashes in the real cache.
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

type Payload = Arc<u64>;

struct Sharded {
    shards: Vec<RwLock<HashMap<SeriesId, Payload, IdBuildHasher>>>,
}

impl Sharded {
    fn new() -> Self {
        Sharded {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
        }
    }
    fn shard(&self, id: SeriesId) -> &RwLock<HashMap<SeriesId, Payload, IdBuildHasher>> {
        &self.shards[((id.0 >> 32) as usize) % SHARDS]
    }
    fn insert(&self, id: SeriesId) {
        self.shard(id).write().insert(id, Arc::new(id.0));
    }
    fn get(&self, id: SeriesId) -> Option<Payload> {
        self.shard(id).read().get(&id).cloned()
    }
    fn scan(&self) -> u64 {
        let mut n = 0;
        for s in &self.shards {
            n += s.read().values().map(|v| **v & 1).sum::<u64>();
        }
        n
    }
}

fn bench_maps(c: &mut Criterion) {
    let ids = ids();
    let mut g = c.benchmark_group("aggregator_cache_map");
    g.throughput(Throughput::Elements(N));
    g.bench_function("insert/sharded_rwlock", |b| {
        b.iter_batched(
            Sharded::new,
            |m| {
                for id in &ids {
                    m.insert(*id);
                }
                m
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("insert/dashmap", |b| {
        b.iter_batched(
            || {
                DashMap::<SeriesId, Payload, IdBuildHasher>::with_hasher_and_shard_amount(
                    IdBuildHasher::default(),
                    SHARDS,
                )
            },
            |m| {
                for id in &ids {
                    m.insert(*id, Arc::new(id.0));
                }
                m
            },
            BatchSize::LargeInput,
        )
    });
    let sharded = Arc::new(Sharded::new());
    let dash = Arc::new(
        DashMap::<SeriesId, Payload, IdBuildHasher>::with_hasher_and_shard_amount(
            IdBuildHasher::default(),
            SHARDS,
        ),
    );
    for id in &ids {
        sharded.insert(*id);
        dash.insert(*id, Arc::new(id.0));
    }
    g.bench_function("lookup/sharded_rwlock", |b| {
        b.iter(|| ids.iter().filter(|id| sharded.get(**id).is_some()).count())
    });
    g.bench_function("lookup/dashmap", |b| {
        b.iter(|| {
            ids.iter()
                .filter(|id| dash.get(*id).map(|v| v.clone()).is_some())
                .count()
        })
    });
    // Lookups while another thread scans the map in a loop.
    {
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, st2) = (sharded.clone(), stop.clone());
        let scanner = std::thread::spawn(move || {
            while !st2.load(Ordering::Relaxed) {
                std::hint::black_box(s2.scan());
            }
        });
        g.bench_function("lookup_while_scanning/sharded_rwlock", |b| {
            b.iter(|| ids.iter().filter(|id| sharded.get(**id).is_some()).count())
        });
        stop.store(true, Ordering::Relaxed);
        let _ = scanner.join();
    }
    {
        let stop = Arc::new(AtomicBool::new(false));
        let (d2, st2) = (dash.clone(), stop.clone());
        let scanner = std::thread::spawn(move || {
            while !st2.load(Ordering::Relaxed) {
                std::hint::black_box(d2.iter().map(|e| *e.value().as_ref() & 1).sum::<u64>());
            }
        });
        g.bench_function("lookup_while_scanning/dashmap", |b| {
            b.iter(|| {
                ids.iter()
                    .filter(|id| dash.get(*id).map(|v| v.clone()).is_some())
                    .count()
            })
        });
        stop.store(true, Ordering::Relaxed);
        let _ = scanner.join();
    }
    g.finish();
}

fn bench_cache(c: &mut Criterion) {
    let labels: Vec<Labels> = (0..10_000)
        .map(|i| {
            Labels::from_pairs([
                ("__name__", "x".to_string()),
                ("pod", format!("pod-{i:05}")),
                ("job", "api".to_string()),
            ])
        })
        .collect();
    let mut g = c.benchmark_group("aggregator_cache");
    g.throughput(Throughput::Elements(labels.len() as u64));
    g.bench_function("create_10k_series", |b| {
        b.iter_batched(
            || SeriesCache::new(CacheOptions::default()),
            |cache| {
                for l in &labels {
                    cache.get_or_create(l, 0).unwrap();
                }
                cache
            },
            BatchSize::LargeInput,
        )
    });
    let cache = SeriesCache::new(CacheOptions::default());
    let series: Vec<_> = labels
        .iter()
        .map(|l| cache.get_or_create(l, 0).unwrap())
        .collect();
    let mut t = 1_700_000_000_000i64;
    g.bench_function("append_10k_samples", |b| {
        b.iter(|| {
            t += 1000;
            for (i, s) in series.iter().enumerate() {
                s.append(
                    std::iter::once(Sample {
                        timestamp_ms: t,
                        value: (t / 1000) as f64 + i as f64,
                    }),
                    surge_store::cache::AppendBounds {
                        min_ms: i64::MIN,
                        max_ms: i64::MAX,
                        now_ms: t,
                    },
                    300_000,
                );
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_maps, bench_cache);
criterion_main!(benches);
