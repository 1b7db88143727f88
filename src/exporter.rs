//! Wiring of the stages. (Being written.)
