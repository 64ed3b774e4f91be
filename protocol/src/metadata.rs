//! Message metadata: string keys to string values (PROTOCOL.md §11).

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use std::borrow::Cow;
use std::fmt;

/// The metadata of a message: a map of string keys to string values, kept sorted by key.
///
/// A publisher attaches metadata to a `sendToGroup`, an `event` or an `invoke`; the service
/// hands it on with the `message`s it delivers and with `invokeResponse`s. On the JSON wire it
/// is the object `"metadata":{"key":"value",…}`, in protobuf a `map<string, string>`, over
/// HTTP the headers `x-webpubsub-metadata-<key>`.
///
/// Most messages carry none, so the empty map is free: [`Metadata::new`] does not allocate,
/// and a message without metadata encodes and decodes as it did before metadata existed.
/// The map is a sorted vector, which suits the few entries metadata has (lookups are a binary
/// search); equal maps are equal whatever order their entries arrived in, and encode to the
/// same bytes.
///
/// The limits of the service ([`check_metadata`](crate::check_metadata)) are not
/// enforced here: a decoded message keeps what the peer sent, and a sender checks before it
/// sends.
///
/// ```
/// use webpubsub_protocol::Metadata;
/// let mut m = Metadata::new().with("trace-id", "abc").with("origin", "cli");
/// assert_eq!(m.get("trace-id"), Some("abc"));
/// assert_eq!(m.insert("origin", "gui"), Some("cli".to_owned()));
/// // Iteration is in key order.
/// let keys: Vec<&str> = m.iter().map(|(k, _)| k).collect();
/// assert_eq!(keys, ["origin", "trace-id"]);
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Metadata {
    /// Sorted by key, keys unique.
    entries: Vec<(String, String)>,
}

impl Metadata {
    /// An empty map; allocates nothing.
    pub const fn new() -> Metadata {
        Metadata {
            entries: Vec::new(),
        }
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The value of `key`, if present. Keys are compared exactly (case-sensitively), as the
    /// service compares them.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.find(key).ok().map(|i| self.entries[i].1.as_str())
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`; returns the value it replaces, if any.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Option<String> {
        let key = key.into();
        let value = value.into();
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// [`insert`](Self::insert) for building a map in one expression.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Metadata {
        self.insert(key, value);
        self
    }

    /// Removes `key`; returns its value, if it was present.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.find(key).ok().map(|i| self.entries.remove(i).1)
    }

    /// The entries as `(key, value)` pairs, in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + DoubleEndedIterator {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The size the service's 8 KiB limit counts: the bytes of every key and value.
    pub fn total_bytes(&self) -> usize {
        self.entries.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// Builds a map from entries in any order; for a repeated key the last value wins (the
    /// rule of protobuf maps). Sorting is skipped when the entries are already sorted, as
    /// this crate's encoders write them.
    pub(crate) fn from_entries_last_wins(mut entries: Vec<(String, String)>) -> Metadata {
        if !entries.windows(2).all(|w| w[0].0 < w[1].0) {
            // Stable: equal keys keep their wire order, so the last of a run is the last sent;
            // moving each later value into the kept entry keeps the last one.
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            entries.dedup_by(|later, kept| {
                let same = later.0 == kept.0;
                if same {
                    std::mem::swap(&mut later.1, &mut kept.1);
                }
                same
            });
        }
        Metadata { entries }
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Metadata {
    /// Collects pairs; for a repeated key the last value wins.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Metadata {
        Metadata::from_entries_last_wins(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl<K: Into<String>, V: Into<String>> Extend<(K, V)> for Metadata {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<K: Into<String>, V: Into<String>, const N: usize> From<[(K, V); N]> for Metadata {
    fn from(pairs: [(K, V); N]) -> Metadata {
        pairs.into_iter().collect()
    }
}

impl IntoIterator for Metadata {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;

    /// The entries in key order.
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl serde::Serialize for Metadata {
    /// As a JSON object of strings, in key order.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> serde::Deserialize<'de> for Metadata {
    /// From a JSON object whose values are all strings. A repeated key is an error, as a
    /// repeated field of a message is: which of the two the sender meant is unknowable.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Metadata, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Metadata;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Metadata, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some((k, v)) = map.next_entry::<Cow<'de, str>, Cow<'de, str>>()? {
                    entries.push((k.into_owned(), v.into_owned()));
                }
                let n = entries.len();
                let m = Metadata::from_entries_last_wins(entries);
                if m.len() != n {
                    return Err(de::Error::custom("repeated metadata key"));
                }
                Ok(m)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_map_allocates_nothing() {
        let m = Metadata::new();
        assert_eq!(m.entries.capacity(), 0);
        assert!(m.is_empty());
        assert_eq!(Metadata::default(), m);
    }

    #[test]
    fn entries_are_kept_sorted_and_unique() {
        let mut m = Metadata::from([("b", "2"), ("a", "1"), ("c", "3")]);
        assert_eq!(
            m.iter().collect::<Vec<_>>(),
            [("a", "1"), ("b", "2"), ("c", "3")]
        );
        assert_eq!(m.insert("b", "two"), Some("2".into()));
        assert_eq!(m.remove("a"), Some("1".into()));
        assert_eq!(m.remove("a"), None);
        assert_eq!(m.get("b"), Some("two"));
        assert!(!m.contains_key("a"));
        assert_eq!(m.len(), 2);
        assert_eq!(m.total_bytes(), "b".len() + "two".len() + 2);
        // The order entries came in does not matter.
        assert_eq!(
            Metadata::from([("x", "1"), ("y", "2")]),
            Metadata::from([("y", "2"), ("x", "1")])
        );
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value_when_collected() {
        let m: Metadata = [("k", "1"), ("j", "0"), ("k", "2")].into_iter().collect();
        assert_eq!(m.iter().collect::<Vec<_>>(), [("j", "0"), ("k", "2")]);
    }

    #[test]
    fn json_form_is_an_object_of_strings() {
        let m = Metadata::from([("b", "2"), ("a", "\"1\"")]);
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(text, r#"{"a":"\"1\"","b":"2"}"#);
        assert_eq!(serde_json::from_str::<Metadata>(&text).unwrap(), m);
        for bad in [
            r#"{"a":1}"#,
            r#"{"a":null}"#,
            r#"["a"]"#,
            r#"{"a":"1","a":"2"}"#,
        ] {
            assert!(serde_json::from_str::<Metadata>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_shows_a_map() {
        assert_eq!(
            format!("{:?}", Metadata::from([("k", "v")])),
            r#"{"k": "v"}"#
        );
    }
}
