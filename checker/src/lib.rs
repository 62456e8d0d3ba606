//! detcd-checker (to be written).

pub mod jepsen;
pub mod models;
pub mod report;
pub mod wgl;
