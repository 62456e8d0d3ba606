//! detcd-checker (to be written).

pub mod models;
pub mod report;
pub mod wgl;
