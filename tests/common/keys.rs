//! Comparing exported occurrence keys with generated ones: lost = generated − exported,
//! duplicated = exported more than once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use kube_event_exporter::event::Event;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Delivery {
    pub generated: usize,
    pub exported: usize,
    pub lost: Vec<String>,
    pub duplicated: Vec<String>,
    /// Exported keys that were never generated (filtered ones leaking through, or garbage).
    pub unexpected: Vec<String>,
    pub exported_keys: Vec<String>,
}

impl Delivery {
    pub fn compare(generated: &[String], exported: &[String]) -> Self {
        let want: BTreeSet<&String> = generated.iter().collect();
        let mut counts: BTreeMap<&String, usize> = BTreeMap::new();
        for k in exported {
            *counts.entry(k).or_default() += 1;
        }
        Self {
            generated: want.len(),
            exported: exported.len(),
            lost: want
                .iter()
                .filter(|k| !counts.contains_key(**k))
                .map(|k| k.to_string())
                .collect(),
            duplicated: counts
                .iter()
                .filter(|(_, n)| **n > 1)
                .map(|(k, _)| k.to_string())
                .collect(),
            unexpected: counts
                .keys()
                .filter(|k| !want.contains(*k))
                .map(|k| k.to_string())
                .collect(),
            exported_keys: exported.to_vec(),
        }
    }

    pub fn is_exact(&self) -> bool {
        self.lost.is_empty() && self.duplicated.is_empty() && self.unexpected.is_empty()
    }

    pub fn summary(&self) -> String {
        fn head(v: &[String]) -> String {
            v.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
        }
        // For the first lost keys: what was exported of the same event (a later count?).
        let related: Vec<String> = self
            .lost
            .iter()
            .take(3)
            .map(|k| {
                let uid = k.rsplit_once(':').map(|(u, _)| u).unwrap_or(k);
                let same: Vec<&String> = self
                    .exported_keys
                    .iter()
                    .filter(|e| e.starts_with(uid))
                    .collect();
                format!("{k} -> exported {same:?}")
            })
            .collect();
        format!(
            "generated {}, exported {}, lost {} [{}], duplicated {} [{}], unexpected {} [{}]; {related:?}",
            self.generated,
            self.exported,
            self.lost.len(),
            head(&self.lost),
            self.duplicated.len(),
            head(&self.duplicated),
            self.unexpected.len(),
            head(&self.unexpected)
        )
    }
}

/// Occurrence keys of every complete NDJSON line (default event document) in `path`; a line still
/// being written (no newline yet) is not counted. A missing file has none.
pub fn keys_in_file(path: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n') && !l.trim().is_empty())
        .map(|l| {
            let e: Event = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("bad line in {}: {e}: {l}", path.display()));
            e.occurrence_key()
        })
        .collect()
}
