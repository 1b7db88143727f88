//! Involved-object enrichment. (Being written.)
