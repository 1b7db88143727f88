//! Receivers: one bounded queue and one worker per receiver. (Being written.)
