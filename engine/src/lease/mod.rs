//! lease (to be written).
