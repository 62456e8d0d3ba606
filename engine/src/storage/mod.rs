//! storage (to be written).
