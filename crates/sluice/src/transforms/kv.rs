//! Keys, Values, KvSwap, WithKeys: reshaping key-value pairs.

use sluice_core::Element;

use crate::pcollection::PCollection;

impl<K: Element, V: Element> PCollection<(K, V)> {
    /// The key of each pair (Beam's `Keys`).
    pub fn keys(&self, name: &str) -> PCollection<K> {
        self.map(name, |(k, _): (K, V)| k)
    }

    /// The value of each pair (Beam's `Values`).
    pub fn values(&self, name: &str) -> PCollection<V> {
        self.map(name, |(_, v): (K, V)| v)
    }

    /// Each pair with key and value swapped (Beam's `KvSwap`).
    pub fn kv_swap(&self, name: &str) -> PCollection<(V, K)> {
        self.map(name, |(k, v): (K, V)| (v, k))
    }
}

impl<T: Element> PCollection<T> {
    /// Each element keyed by `f` of it (Beam's `WithKeys`); the same as [`PCollection::key_by`].
    pub fn with_keys<K, F>(&self, name: &str, f: F) -> PCollection<(K, T)>
    where
        K: Element,
        F: Fn(&T) -> K + Clone + Send + 'static,
    {
        self.key_by(name, f)
    }
}
