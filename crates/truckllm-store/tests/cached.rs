//! The cache wrapper's own behaviour: hits within a bucket, invalidation on writes, misses
//! across bucket boundaries, bounded size, and the hit-rate metric.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use truckllm_store::{
    CachedStore, ManualClock, MemoryStore, Metric, RuntimeStore, RuntimeStoreExt, Series,
    StoreOptions,
};

#[tokio::test]
async fn hot_reads_hit_writes_invalidate_and_buckets_expire() {
    let clock = ManualClock::new(1_000_000_000_500);
    let options = StoreOptions {
        clock: Arc::new(clock.clone()),
        ..StoreOptions::default()
    };
    let inner = MemoryStore::with_options(options, 1000);
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let store = metrics::with_local_recorder(&recorder, || {
        CachedStore::new(inner, 4, Duration::from_secs(10), Arc::new(clock.clone()))
    });
    let series: Vec<Series> = (0..3)
        .map(|i| Series::new("p", format!("k{i}"), Metric::Req).expect("series"))
        .collect();
    for s in &series {
        store.increment(s, 2.0).await.expect("increment");
    }
    let minute = Duration::from_secs(60);
    assert_eq!(
        store.window_many(&series, minute).await.expect("window"),
        vec![2.0; 3]
    );
    assert_eq!(
        store.window_many(&series, minute).await.expect("window"),
        vec![2.0; 3]
    );
    assert_eq!(
        store.hit_stats(),
        (3, 6),
        "the second read is served from the cache"
    );

    store.increment(&series[0], 5.0).await.expect("write");
    assert_eq!(
        store.window(&series[0], minute).await.expect("window"),
        7.0,
        "a write drops the cached window"
    );
    assert_eq!(store.window(&series[1], minute).await.expect("window"), 2.0);
    assert_eq!(store.hit_stats(), (4, 8));

    clock.advance(Duration::from_secs(1));
    store.window_many(&series, minute).await.expect("window");
    assert_eq!(
        store.hit_stats(),
        (4, 11),
        "a new bucket means a fresh read"
    );

    for i in 0..20 {
        let s = Series::new("q", format!("k{i}"), Metric::Tokens).expect("series");
        store.get(&s).await.expect("get");
    }
    assert!(
        store.cached_len() <= 8,
        "bounded: {} cached",
        store.cached_len()
    );
    let text = handle.render();
    assert!(
        text.contains("truckllm_store_cache_hits_total{backend=\"memory\"} 4"),
        "{text}"
    );
    assert!(
        text.contains("truckllm_store_cache_hit_ratio{backend=\"memory\"}"),
        "{text}"
    );
}
