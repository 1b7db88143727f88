//! Leader election: the Lease lock and the delivery cursor it carries.
pub mod cursor;
pub mod elector;
pub mod lock;
pub mod renewer;
pub mod shards;
