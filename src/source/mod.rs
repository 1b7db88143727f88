//! The source: a paginated list, then a watch resumed from the last resourceVersion.
pub mod event;
