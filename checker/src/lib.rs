//! detcd-checker (to be written).
