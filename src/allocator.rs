//! What the allocator holds, as gauges on `/metrics` (ADR 0005).
//!
//! The binary's global allocator is jemalloc (feature `jemalloc`, the default). Its own
//! statistics split the node's memory into what our data structures hold (`allocated`), the
//! pages those allocations occupy (`active`), what jemalloc keeps for itself (`metadata`) and
//! what is resident in all (`resident`), which is how ADR 0005 tells "our structures keep
//! memory" from "the allocator keeps freed pages". The binary calls [`install`] once before it
//! starts the node; a node started without it (tests, embedders with another allocator)
//! publishes no allocator gauges, since jemalloc's counters would describe an allocator nobody
//! uses.

use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::Registry;

/// Set by [`install`]: jemalloc is this process's global allocator.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Declares that this process's global allocator is jemalloc, so that nodes started from now
/// on publish its statistics (`planetmint_streams_allocator_bytes{kind}`). Called by the
/// binary, which declares the global allocator.
pub fn install() {
    INSTALLED.store(true, Ordering::Relaxed);
}

/// Whether [`install`] was called (and this build has jemalloc).
pub fn installed() -> bool {
    cfg!(feature = "jemalloc") && INSTALLED.load(Ordering::Relaxed)
}

/// jemalloc's counters, in bytes, as of the last refresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocatorStats {
    /// Bytes our code holds (live allocations).
    pub allocated: u64,
    /// Bytes in the pages (slabs, large extents) those allocations occupy.
    pub active: u64,
    /// jemalloc's own bookkeeping (extent descriptors, radix tree, thread caches' structures).
    pub metadata: u64,
    /// The part of `metadata` in extent descriptors (`edata_t`, one per extent or slab jemalloc
    /// ever needed at once; kept for reuse, never returned).
    pub metadata_edata: u64,
    /// The part of `metadata` in the radix tree mapping pages to extents (counted as reserved;
    /// only the leaves' pages the address range used were touched).
    pub metadata_rtree: u64,
    /// Resident bytes jemalloc accounts for: active, metadata and dirty pages not yet purged.
    pub resident: u64,
    /// Bytes in active extents (whole chunks mapped for active data).
    pub mapped: u64,
    /// Virtual memory purged and kept for reuse (not resident).
    pub retained: u64,
}

/// Reads jemalloc's statistics now (advancing its epoch first, since they are cached). `None`
/// in a build without jemalloc or when jemalloc refuses (statistics compiled out).
pub fn stats() -> Option<AllocatorStats> {
    read()
}

#[cfg(feature = "jemalloc")]
fn read() -> Option<AllocatorStats> {
    use tikv_jemalloc_ctl::{epoch, stats, Access, AsName};
    epoch::advance().ok()?;
    // Not wrapped by tikv-jemalloc-ctl's typed keys (jemalloc 5.3); read by name.
    let by_name = |name: &[u8]| -> Result<usize, tikv_jemalloc_ctl::Error> { name.name().read() };
    let get = |value: Result<usize, tikv_jemalloc_ctl::Error>| {
        value.ok().map(|v| u64::try_from(v).unwrap_or(u64::MAX))
    };
    Some(AllocatorStats {
        allocated: get(stats::allocated::read())?,
        active: get(stats::active::read())?,
        metadata: get(stats::metadata::read())?,
        metadata_edata: get(by_name(b"stats.metadata_edata\0"))?,
        metadata_rtree: get(by_name(b"stats.metadata_rtree\0"))?,
        resident: get(stats::resident::read())?,
        mapped: get(stats::mapped::read())?,
        retained: get(stats::retained::read())?,
    })
}

#[cfg(not(feature = "jemalloc"))]
fn read() -> Option<AllocatorStats> {
    None
}

/// The gauge family, refreshed from jemalloc at every scrape.
struct Collector {
    bytes: prometheus::IntGaugeVec,
}

impl prometheus::core::Collector for Collector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.bytes.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        if let Some(stats) = stats() {
            for (kind, value) in [
                ("allocated", stats.allocated),
                ("active", stats.active),
                ("metadata", stats.metadata),
                ("metadata_edata", stats.metadata_edata),
                ("metadata_rtree", stats.metadata_rtree),
                ("resident", stats.resident),
                ("mapped", stats.mapped),
                ("retained", stats.retained),
            ] {
                self.bytes
                    .with_label_values(&[kind])
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            }
        }
        self.bytes.collect()
    }
}

/// Registers `planetmint_streams_allocator_bytes{kind}` when jemalloc is installed (see
/// [`install`]); does nothing otherwise.
pub fn register(registry: &Registry) -> Result<(), prometheus::Error> {
    if !installed() {
        return Ok(());
    }
    let bytes = prometheus::IntGaugeVec::new(
        prometheus::Opts::new(
            "planetmint_streams_allocator_bytes",
            "jemalloc's statistics: allocated (live data), active (pages holding it), metadata \
             (jemalloc's own; of it metadata_edata in extent descriptors and metadata_rtree in \
             the page radix tree), resident (all resident pages it accounts for), mapped, retained \
             (purged virtual memory kept for reuse)",
        ),
        &["kind"],
    )?;
    registry.register(Box::new(Collector { bytes }))
}
