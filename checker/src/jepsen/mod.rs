//! Import of Jepsen EDN histories for the register, cas-register and kv models.
//!
//! A Jepsen history is a sequence of operation maps such as
//! `{:process 0, :type :invoke, :f :read, :value nil}`, either one per line (Jepsen's
//! `history.edn`) or inside one top-level vector. [`edn`] reads the text; the importer
//! pairs invocations with completions and builds [`Operation`]s. Any problem is an
//! [`ImportError`] naming the line. This module does not check anything: pass the
//! result to [`crate::wgl::check_partitioned`] with the matching model.

mod check;
pub mod edn;
mod import;
mod write;

pub use check::{JepsenModel, JepsenVerdict, check_jepsen};
pub use write::write_register;

use crate::models::{Keyed, KvOp, KvOutput, RegisterOp, RegisterOutput};
use crate::wgl::Operation;

/// Why a history could not be imported, and on which line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ImportError {
    /// 1-based line of the offending form (0: the file as a whole).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl From<edn::ParseError> for ImportError {
    fn from(e: edn::ParseError) -> Self {
        ImportError {
            line: e.line,
            reason: format!("column {}: {}", e.column, e.reason),
        }
    }
}

/// Reads the operation maps of `text`: one per top-level form, or the elements of a
/// single top-level vector.
fn forms(text: &str) -> Result<Vec<(usize, edn::Edn)>, ImportError> {
    Ok(edn::parse_all(text, true)?)
}

/// Imports a register history (`cas_allowed` false) or a cas-register history.
pub fn import_register(
    text: &str,
    cas_allowed: bool,
) -> Result<Vec<Operation<Keyed<RegisterOp>, RegisterOutput>>, ImportError> {
    let forms = forms(text)?;
    let pairs = import::pair(&forms)?;
    import::register(&pairs, cas_allowed)
}

/// Imports a kv (get/put/append) history.
pub fn import_kv(text: &str) -> Result<Vec<Operation<Keyed<KvOp>, KvOutput>>, ImportError> {
    let forms = forms(text)?;
    let pairs = import::pair(&forms)?;
    import::kv(&pairs)
}

#[cfg(test)]
mod tests;
