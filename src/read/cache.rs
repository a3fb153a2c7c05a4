//! Hot catalog reads served from memory, exact (ADR 0023, which supersedes ADR 0019).
//!
//! `product(id)` and `products(…)` pages are kept in memory, each tagged with the
//! catalog's **epoch** (`Checkpoints::epoch`) read *before* the database was: the epoch
//! moves whenever the catalog's rows may have changed — a fold committed here or, on
//! PostgreSQL, on another replica (its doorbell), a rebuild swapped the view — and it
//! moves *before* the checkpoint that read-your-writes waits on. So:
//!
//! - a page is served only while the epoch is the one it was read in: no fold has become
//!   visible through a checkpoint since, and a client that was promised position `p`
//!   (its mutation's payload) reads rows at least that new;
//! - a product is served while no move of the epoch since it was read named that
//!   product, or named no product at all (`Checkpoints::fresh`): a fold says which rows
//!   it changed, so under a stream of stock changes the products that did not change are
//!   still served from memory;
//! - a read that raced a fold (it read the epoch, then the fold committed and moved the
//!   epoch, then it stored what it read) is stored under the old epoch and never served.
//!
//! Events that do not touch the catalog (cart lines, orders) move its checkpoint but not
//! its epoch, so a shop's browsing is served from memory while its carts and orders
//! move. What the cache does not see is a change behind the service's back (an operator
//! editing `catalog_view` by hand): that shows after the next change of the catalog or a
//! rebuild, as it would for a subscriber.
//!
//! Bounded: at most `capacity` products and `capacity / 100` pages (a page holds at most
//! 100 products); when one map is full it is emptied, and the next reads fill it again.
//! `capacity` 0 turns the cache off.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use uuid::Uuid;

use super::catalog::{CatalogFilter, CatalogPage, NAME, PageBound, catalog_view};
use super::checkpoints::Checkpoints;
use crate::metrics::Metrics;

/// What one `products` page was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    search: Option<String>,
    in_stock_only: bool,
    include_discontinued: bool,
    forwards: bool,
    n: u64,
    cursor: Option<String>,
    count: bool,
}

impl PageKey {
    pub fn new(filter: &CatalogFilter, bound: &PageBound<'_>, count: bool) -> Self {
        let (forwards, n, cursor) = match *bound {
            PageBound::First { n, after } => (true, n, after),
            PageBound::Last { n, before } => (false, n, before),
        };
        Self {
            search: filter.search.clone(),
            in_stock_only: filter.in_stock_only,
            include_discontinued: filter.include_discontinued,
            forwards,
            n,
            cursor: cursor.map(str::to_owned),
            count,
        }
    }
}

/// The catalog's hot reads: pages valid for one epoch at a time, products until they
/// change.
pub struct CatalogCache {
    capacity: usize,
    checkpoints: Arc<Checkpoints>,
    inner: Mutex<Inner>,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct Inner {
    /// The epoch every page held was read in.
    epoch: u64,
    /// Each product with the epoch it was read in.
    products: HashMap<Uuid, (u64, Option<catalog_view::Model>)>,
    pages: HashMap<PageKey, Arc<CatalogPage>>,
}

impl Inner {
    /// Whether pages read in `epoch` may be stored: the held ones are dropped when
    /// `epoch` is newer; a page read in an older epoch is never stored.
    fn enter(&mut self, epoch: u64) -> bool {
        if epoch > self.epoch {
            self.epoch = epoch;
            self.pages.clear();
        }
        epoch == self.epoch
    }
}

impl CatalogCache {
    pub fn new(capacity: usize, checkpoints: Arc<Checkpoints>, metrics: Arc<Metrics>) -> Self {
        checkpoints.keep_keys(NAME);
        Self {
            capacity,
            checkpoints,
            inner: Mutex::new(Inner::default()),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The product `id` if held and unchanged since it was read: `Some(None)` is a
    /// product known not to exist.
    pub fn product(&self, id: Uuid) -> Option<Option<catalog_view::Model>> {
        self.held(id, "product")
    }

    /// The product `id` for a mutation's payload, once the catalog's checkpoint has
    /// reached the mutation's position: a copy still fresh then is at least that new
    /// (the fold of that position named the product, and moved the epoch before the
    /// checkpoint), so it is what a read of the view would answer.
    pub fn payload(&self, id: Uuid) -> Option<catalog_view::Model> {
        self.held(id, "payload").flatten()
    }

    fn held(&self, id: Uuid, read: &'static str) -> Option<Option<catalog_view::Model>> {
        if !self.enabled() {
            return None;
        }
        let held = self.lock().products.get(&id).cloned();
        let held = held.and_then(|(epoch, row)| {
            let mut key = Uuid::encode_buffer();
            let key = id.hyphenated().encode_lower(&mut key);
            self.checkpoints.fresh(NAME, key, epoch).then_some(row)
        });
        self.metrics.read_cache(read, held.is_some());
        held
    }

    /// Keeps the rows a fold of the catalog wrote, as its committed transaction left
    /// them, in `epoch`: the one its commit moved the catalog to
    /// (`Checkpoints::changed_keys`), which named each of them. A mutation that waited for
    /// that fold then reads its payload from here, without a round trip.
    pub fn keep_folded(&self, epoch: u64, rows: Vec<catalog_view::Model>) {
        for row in rows {
            self.keep_product(epoch, row.id, Some(row));
        }
    }

    /// Keeps the product `id` as read after `epoch` was (unless a newer read is held).
    pub fn keep_product(&self, epoch: u64, id: Uuid, row: Option<catalog_view::Model>) {
        if !self.enabled() {
            return;
        }
        let mut inner = self.lock();
        if inner
            .products
            .get(&id)
            .is_some_and(|(held, _)| *held > epoch)
        {
            return;
        }
        if inner.products.len() >= self.capacity && !inner.products.contains_key(&id) {
            inner.products.clear();
        }
        inner.products.insert(id, (epoch, row));
    }

    /// The page `key` as read in `epoch` (the current one), if held.
    pub fn page(&self, epoch: u64, key: &PageKey) -> Option<Arc<CatalogPage>> {
        if !self.enabled() {
            return None;
        }
        let held = {
            let inner = self.lock();
            (inner.epoch == epoch)
                .then(|| inner.pages.get(key).cloned())
                .flatten()
        };
        self.metrics.read_cache("page", held.is_some());
        held
    }

    /// Keeps the page `key` as read after `epoch` was.
    pub fn keep_page(&self, epoch: u64, key: PageKey, page: Arc<CatalogPage>) {
        if !self.enabled() {
            return;
        }
        let mut inner = self.lock();
        if !inner.enter(epoch) {
            return;
        }
        if inner.pages.len() >= (self.capacity / 100).max(1) {
            inner.pages.clear();
        }
        inner.pages.insert(key, page);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(stock: i64) -> catalog_view::Model {
        catalog_view::Model {
            id: Uuid::nil(),
            sku: "S".into(),
            name: "n".into(),
            description: String::new(),
            price_cents: 100,
            stock,
            status: "ACTIVE".into(),
            review_count: 0,
            rating_total: 0,
            version: 1,
            updated_at: chrono::Utc::now(),
            position: 1,
        }
    }

    fn checkpoints() -> Arc<Checkpoints> {
        Arc::new(Checkpoints::at(&[NAME], |_| 0))
    }

    fn new_cache(capacity: usize) -> (CatalogCache, Arc<Checkpoints>) {
        let checkpoints = checkpoints();
        let cache = CatalogCache::new(capacity, checkpoints.clone(), Arc::default());
        (cache, checkpoints)
    }

    /// The key the catalog's fold announces a product's change under.
    fn key(id: Uuid) -> String {
        id.to_string()
    }

    #[test]
    fn the_rows_a_fold_wrote_are_served_from_the_epoch_it_moved_to_until_a_later_move_names_them() {
        let (cache, checkpoints) = new_cache(10);
        let a = Uuid::nil();
        // A copy read before the fold.
        cache.keep_product(checkpoints.epoch(NAME), a, Some(row(1)));
        // The fold: its move names `a`, its row is kept in the epoch it moved to, then
        // the checkpoint moves.
        let epoch = checkpoints.touch(NAME, Some([key(a).as_str()].into_iter()));
        assert!(cache.payload(a).is_none(), "the older copy is never served");
        cache.keep_folded(epoch, vec![row(5)]);
        checkpoints.advance(NAME, 10);
        assert_eq!(cache.payload(a).map(|r| r.stock), Some(5));
        assert_eq!(cache.product(a).flatten().map(|r| r.stock), Some(5));
        // A fold that kept its rows after a later move named them (another replica's
        // doorbell got in between): never served.
        let stale = checkpoints.touch(NAME, Some([key(a).as_str()].into_iter()));
        checkpoints.changed_keys(NAME, 11, [key(a).as_str()].into_iter());
        cache.keep_folded(stale, vec![row(6)]);
        assert!(cache.payload(a).is_none());
        assert!(cache.product(a).is_none());
        // A fold of more rows than are remembered by key moves the epoch for every row:
        // its own rows, kept in that epoch, are served.
        let wiped = checkpoints.touch(NAME, None::<std::iter::Empty<&str>>);
        cache.keep_folded(wiped, vec![row(7)]);
        assert_eq!(cache.payload(a).map(|r| r.stock), Some(7));
    }

    #[test]
    fn a_product_is_served_until_a_fold_names_it() {
        let (cache, checkpoints) = new_cache(10);
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert!(cache.product(a).is_none());
        let epoch = checkpoints.epoch(NAME);
        cache.keep_product(epoch, a, Some(row(1)));
        cache.keep_product(epoch, b, Some(row(5)));
        assert_eq!(cache.product(a).flatten().map(|r| r.stock), Some(1));
        // A fold changed `a` only: `b` is still served, `a` is not.
        checkpoints.changed_keys(NAME, 10, [key(a).as_str()].into_iter());
        assert!(cache.product(a).is_none());
        assert_eq!(cache.product(b).flatten().map(|r| r.stock), Some(5));
        // A read that began before that fold and ends after it is never served...
        cache.keep_product(epoch, a, Some(row(1)));
        assert!(cache.product(a).is_none());
        // ...and one that began after it is.
        let later = checkpoints.epoch(NAME);
        cache.keep_product(later, a, Some(row(2)));
        assert_eq!(cache.product(a).flatten().map(|r| r.stock), Some(2));
        // An older read never replaces a newer one.
        cache.keep_product(epoch, a, Some(row(1)));
        assert_eq!(cache.product(a).flatten().map(|r| r.stock), Some(2));
    }

    #[test]
    fn a_change_of_unknown_rows_drops_every_product() {
        let (cache, checkpoints) = new_cache(10);
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let epoch = checkpoints.epoch(NAME);
        cache.keep_product(epoch, a, Some(row(1)));
        cache.keep_product(epoch, b, Some(row(1)));
        // A doorbell of another replica, a rebuild: which rows moved is not said.
        checkpoints.changed(NAME, 10);
        assert!(cache.product(a).is_none());
        assert!(cache.product(b).is_none());
        let later = checkpoints.epoch(NAME);
        cache.keep_product(later, a, Some(row(3)));
        assert_eq!(cache.product(a).flatten().map(|r| r.stock), Some(3));
    }

    #[test]
    fn too_many_touched_keys_are_forgotten_as_a_change_of_every_row() {
        let (cache, checkpoints) = new_cache(10);
        let a = Uuid::from_u128(1);
        cache.keep_product(checkpoints.epoch(NAME), a, Some(row(1)));
        let many: Vec<String> = (0..=super::super::checkpoints::TOUCHED_KEYS as u128)
            .map(|i| key(Uuid::from_u128(i + 100)))
            .collect();
        checkpoints.changed_keys(NAME, 10, many.iter().map(String::as_str));
        assert!(cache.product(a).is_none());
    }

    #[test]
    fn a_page_is_served_only_in_the_epoch_it_was_read_in() {
        let (cache, checkpoints) = new_cache(1000);
        let filter = CatalogFilter::default();
        let key = PageKey::new(&filter, &PageBound::First { n: 20, after: None }, false);
        let epoch = checkpoints.epoch(NAME);
        cache.keep_page(epoch, key.clone(), Arc::new(CatalogPage::default()));
        assert!(cache.page(epoch, &key).is_some());
        // Any change of the catalog may move any page.
        checkpoints.changed_keys(NAME, 10, [key_of(7).as_str()].into_iter());
        let later = checkpoints.epoch(NAME);
        assert!(cache.page(later, &key).is_none());
        // A read that began before the change is never kept.
        cache.keep_page(epoch, key.clone(), Arc::new(CatalogPage::default()));
        assert!(cache.page(later, &key).is_none());
        cache.keep_page(later, key.clone(), Arc::new(CatalogPage::default()));
        assert!(cache.page(later, &key).is_some());
    }

    fn key_of(i: u128) -> String {
        key(Uuid::from_u128(i))
    }

    /// The keys a fold names are remembered only for a view whose rows someone keeps
    /// copies of: for another view every fold counts as a change of every row.
    #[test]
    fn only_a_view_with_copies_remembers_which_keys_changed() {
        const OTHER: &str = "other_view";
        let checkpoints = Arc::new(Checkpoints::at(&[NAME, OTHER], |_| 0));
        let _cache = CatalogCache::new(10, checkpoints.clone(), Arc::default());
        let (a, b) = (key_of(1), key_of(2));
        for view in [NAME, OTHER] {
            let epoch = checkpoints.epoch(view);
            checkpoints.changed_keys(view, 10, [a.as_str()].into_iter());
            assert!(!checkpoints.fresh(view, &a, epoch), "{view}: the named row");
            assert_eq!(
                checkpoints.fresh(view, &b, epoch),
                view == NAME,
                "{view}: a row the fold did not name"
            );
        }
    }

    #[test]
    fn an_unknown_product_is_remembered_as_unknown() {
        let (cache, _) = new_cache(10);
        cache.keep_product(3, Uuid::nil(), None);
        assert_eq!(cache.product(Uuid::nil()), Some(None));
    }

    #[test]
    fn the_cache_holds_at_most_its_capacity_and_nothing_when_off() {
        let (cache, _) = new_cache(4);
        for i in 0..50u128 {
            cache.keep_product(0, Uuid::from_u128(i), None);
            assert!(cache.lock().products.len() <= 4);
        }
        let (off, _) = new_cache(0);
        off.keep_product(0, Uuid::nil(), None);
        assert!(off.product(Uuid::nil()).is_none());
        let filter = CatalogFilter {
            search: None,
            in_stock_only: false,
            include_discontinued: false,
        };
        let key = PageKey::new(&filter, &PageBound::First { n: 20, after: None }, false);
        off.keep_page(0, key.clone(), Arc::new(CatalogPage::default()));
        assert!(off.page(0, &key).is_none());
    }

    #[test]
    fn pages_differ_by_every_argument() {
        let filter = |search: Option<&str>| CatalogFilter {
            search: search.map(str::to_owned),
            in_stock_only: false,
            include_discontinued: false,
        };
        let first = PageBound::First { n: 20, after: None };
        let keys = [
            PageKey::new(&filter(None), &first, false),
            PageKey::new(&filter(None), &first, true),
            PageKey::new(&filter(Some("a")), &first, false),
            PageKey::new(
                &filter(None),
                &PageBound::First { n: 5, after: None },
                false,
            ),
            PageKey::new(
                &filter(None),
                &PageBound::First {
                    n: 20,
                    after: Some("X"),
                },
                false,
            ),
            PageKey::new(
                &filter(None),
                &PageBound::Last {
                    n: 20,
                    before: None,
                },
                false,
            ),
        ];
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len());
    }
}
