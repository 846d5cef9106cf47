//! Named counters a job reports: what it did, in a stable order.

use serde::ser::{Serialize, SerializeMap, Serializer};

/// Named integer counters, kept in the order they were first set.
///
/// Serialised as a JSON object in that order, so that logs and API answers list a job's
/// counters the way the job declared them (`deleted` before `failed`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    entries: Vec<(String, i64)>,
}

impl Stats {
    /// Empty stats.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stats with every key present at zero, in this order. Jobs start from this so that a
    /// counter that stayed at zero is still reported.
    pub fn with_keys(keys: &[&str]) -> Self {
        Self {
            entries: keys.iter().map(|k| ((*k).to_owned(), 0)).collect(),
        }
    }

    /// Adds `n` to `key`, creating it at the end when missing.
    pub fn add(&mut self, key: &str, n: i64) {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = v.saturating_add(n),
            None => self.entries.push((key.to_owned(), n)),
        }
    }

    /// Adds one to `key`.
    pub fn incr(&mut self, key: &str) {
        self.add(key, 1);
    }

    /// Sets `key` to `value`.
    pub fn set(&mut self, key: &str, value: i64) {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.entries.push((key.to_owned(), value)),
        }
    }

    /// The counter's value; 0 when it was never set.
    pub fn get(&self, key: &str) -> i64 {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map_or(0, |(_, v)| *v)
    }

    /// Adds every counter of `other` to this one.
    pub fn merge(&mut self, other: &Stats) {
        for (k, v) in other.iter() {
            self.add(k, v);
        }
    }

    /// The counters in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i64)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// True when no counter was set.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The stats as a JSON object value.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.entries
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::from(*v)))
                .collect(),
        )
    }

    /// Reads the integer members of a JSON object, ignoring anything else.
    pub fn from_json(value: &serde_json::Value) -> Self {
        let mut stats = Self::new();
        if let Some(map) = value.as_object() {
            for (k, v) in map {
                if let Some(n) = v.as_i64() {
                    stats.set(k, n);
                }
            }
        }
        stats
    }

    /// `"45 deleted, 2 failed"` for the given keys, or for every key when `keys` is empty.
    pub fn summary(&self, keys: &[&str]) -> String {
        if keys.is_empty() {
            self.iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            keys.iter()
                .map(|k| format!("{} {k}", self.get(k)))
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}

impl Serialize for Stats {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (k, v) in &self.entries {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_keep_the_order_they_were_declared_in() {
        let mut stats = Stats::with_keys(&["deleted", "failed"]);
        stats.add("failed", 2);
        stats.incr("already_absent");
        stats.add("deleted", 45);
        assert_eq!(
            serde_json::to_string(&stats).unwrap(),
            r#"{"deleted":45,"failed":2,"already_absent":1}"#
        );
    }

    #[test]
    fn summary_lists_the_requested_keys_even_when_zero() {
        let mut stats = Stats::new();
        stats.add("deleted", 45);
        assert_eq!(
            stats.summary(&["deleted", "failed"]),
            "45 deleted, 0 failed"
        );
        assert_eq!(stats.summary(&[]), "45 deleted");
    }

    #[test]
    fn json_round_trip_ignores_non_integer_members() {
        let value = serde_json::json!({"updated": 3, "note": "x", "skipped": 1});
        let stats = Stats::from_json(&value);
        assert_eq!(stats.get("updated"), 3);
        assert_eq!(stats.get("skipped"), 1);
        assert_eq!(stats.get("note"), 0);
    }

    #[test]
    fn merge_adds_counters() {
        let mut a = Stats::with_keys(&["x"]);
        a.add("x", 2);
        let mut b = Stats::new();
        b.add("x", 3);
        b.add("y", 1);
        a.merge(&b);
        assert_eq!((a.get("x"), a.get("y")), (5, 1));
    }
}
