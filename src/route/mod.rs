//! Routing tree. (Being written.)
