//! One call from Jepsen EDN text to a verdict and a timeline, for the CLI.
//!
//! Picks the model by name, imports, runs the per-key search and builds the report's
//! [`Timeline`]. It adds no checking logic of its own.

use std::str::FromStr;

use super::{ImportError, import_kv, import_register};
use crate::models::{self, CasRegister, Kv, Register};
use crate::report::{Timeline, wgl_timeline};
use crate::wgl::{Operation, Outcome, Partition, check_partitioned_progress};

/// The models a Jepsen history can be checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JepsenModel {
    /// `register`: read and write.
    Register,
    /// `cas-register`: read, write and cas `[old new]`.
    CasRegister,
    /// `kv`: get/put/append of lists per key (list-append semantics).
    Kv,
}

impl JepsenModel {
    /// The names accepted by [`FromStr`], for help texts.
    pub const NAMES: [&'static str; 3] = ["register", "cas-register", "kv"];
}

impl FromStr for JepsenModel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "register" => Ok(JepsenModel::Register),
            "cas-register" => Ok(JepsenModel::CasRegister),
            "kv" => Ok(JepsenModel::Kv),
            other => Err(format!(
                "unknown model '{other}' (expected one of: {})",
                JepsenModel::NAMES.join(", ")
            )),
        }
    }
}

/// The result of checking a Jepsen history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JepsenVerdict {
    /// The search's verdict; indices refer to the imported operations.
    pub outcome: Outcome,
    /// How many client operations were imported (`:fail` ones are not counted).
    pub operations: usize,
    /// Source lines of the operations that could not be placed (Illegal only).
    pub failing_lines: Vec<usize>,
    /// The timeline for the HTML report.
    pub timeline: Timeline,
}

/// Imports `text` as a history of `model` and checks it key by key.
pub fn check_jepsen(
    title: &str,
    text: &str,
    model: JepsenModel,
    step_budget: u64,
) -> Result<JepsenVerdict, ImportError> {
    Ok(match model {
        JepsenModel::Register => run(
            title,
            &Register,
            &import_register(text, false)?,
            step_budget,
        ),
        JepsenModel::CasRegister => run(
            title,
            &CasRegister,
            &import_register(text, true)?,
            step_budget,
        ),
        JepsenModel::Kv => run(title, &Kv, &import_kv(text)?, step_budget),
    })
}

fn run<M>(
    title: &str,
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    step_budget: u64,
) -> JepsenVerdict
where
    M: Partition,
    M::Input: Clone + std::fmt::Display,
    M::Output: Clone + std::fmt::Display,
    M::State: StateText,
{
    let (outcome, progress) = check_partitioned_progress(model, ops, step_budget);
    let failing_lines = match &outcome {
        Outcome::Illegal { failing, .. } => {
            failing.iter().filter_map(|&i| ops.get(i)?.line).collect()
        }
        _ => Vec::new(),
    };
    let timeline = wgl_timeline(
        title,
        model,
        ops,
        &outcome,
        progress.as_ref(),
        models::label,
        StateText::text,
    );
    JepsenVerdict {
        outcome,
        operations: ops.len(),
        failing_lines,
        timeline,
    }
}

/// Readable text of a model state for the report.
trait StateText {
    fn text(&self) -> String;
}

fn key_text(key: &[u8]) -> String {
    if key.is_empty() {
        "register".to_string()
    } else {
        String::from_utf8_lossy(key).into_owned()
    }
}

impl StateText for models::RegisterState {
    fn text(&self) -> String {
        if self.is_empty() {
            return "all nil".to_string();
        }
        let parts: Vec<String> = self
            .iter()
            .map(|(k, v)| format!("{} = {v}", key_text(k)))
            .collect();
        parts.join(", ")
    }
}

impl StateText for models::KvState {
    fn text(&self) -> String {
        if self.is_empty() {
            return "all empty".to_string();
        }
        let parts: Vec<String> = self
            .iter()
            .map(|(k, v)| format!("{} = {v:?}", key_text(k)))
            .collect();
        parts.join(", ")
    }
}
